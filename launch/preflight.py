"""Check a launch against the cluster before submitting it: refuse a job that could never start.

Pure checks over parsed cluster facts, plus one function per backend that gathers the facts:

- Slurm: `scontrol show partition -o` and `scontrol show node -o` are parsed into `SlurmPartition` and
  `SlurmNode`; `check_slurm` compares the allocation (nodes x GPUs per node, CPUs = cpus-per-task x tasks per
  node, memory per node, time limit) with the partition and its nodes and names the resource that can never
  be satisfied. (A request beyond every node sits PENDING with reason PartitionConfig or Resources forever.)
- Kubernetes: the namespace exists, the CRD of the chosen kind is installed and, where the nodes are readable,
  enough nodes carry the GPUs per node asked for. What the user may not read (403) is not held against the job.

Each backend module exposes its check as `preflight(spec, opts)` (launch/slurm.py, launch/k8s.py, which passes
its API client);
launch/launcher.py calls it before anything is recorded or submitted; `soraplan launch --no-preflight` skips it.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Any, Callable

from soraplan.planner.errors import UserError

TIMEOUT_S = 10.0        # scontrol / Kubernetes API calls of the preflight
SKIP_HINT = " (--no-preflight skips this check)"


# ---------------------------------------------------------------------------------------------------- Slurm
@dataclass(frozen=True)
class SlurmRequest:
    """What one job asks of each node, and for how long."""

    partition: str | None       # None: the cluster's default partition
    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    cpus_per_task: int
    mem_gib: int | None         # per node; None: the partition's default
    time_min: int

    @property
    def cpus_per_node(self) -> int:
        return self.cpus_per_task * self.tasks_per_node


@dataclass(frozen=True)
class SlurmPartition:
    name: str
    default: bool
    state: str
    max_time_min: int | None    # None: no limit
    max_nodes: int | None       # per job; None: no limit
    max_cpus_per_node: int | None = None
    max_mem_mib_per_node: int | None = None


@dataclass(frozen=True)
class SlurmNode:
    name: str
    cpus: int
    mem_mib: int
    gpus: int
    state: str
    partitions: tuple[str, ...]


def _kv(line: str) -> dict[str, str]:
    """`Key=Value Key=Value ...` of one `scontrol show ... -o` line (values without spaces)."""
    out: dict[str, str] = {}
    for tok in line.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            out.setdefault(k, v)
    return out


def parse_time_min(text: str) -> int | None:
    """Slurm's time format in minutes: 'INFINITE'/'UNLIMITED' -> None; 'D-HH:MM:SS', 'HH:MM:SS', 'MM:SS', 'MM'.

    Args:
        text: the MaxTime / TimeLimit value.

    Returns:
        Minutes (seconds rounded up), or None for no limit.
    """
    t = text.strip()
    if t.upper() in ("INFINITE", "UNLIMITED", "NONE", ""):
        return None
    if "-" in t:                                    # days-hours[:minutes[:seconds]]
        days, rest = t.split("-", 1)
        h, m, s = (int(x) for x in (rest.split(":") + ["0", "0"])[:3])
        return int(days) * 1440 + h * 60 + m + (1 if s else 0)
    parts = [int(x) for x in t.split(":")]
    h, m, s = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
    return h * 60 + m + (1 if s else 0)


def parse_gpus(tres: str, gres: str = "") -> int:
    """GPUs of one node: `gres/gpu=N` in CfgTRES, else the sum over `gpu[:type]:N[(S:...)]` in Gres.

    Args:
        tres: the node's CfgTRES ('cpu=8,mem=15000M,billing=8,gres/gpu=2').
        gres: the node's Gres ('gpu:a100:8(S:0-1),gpu:t4:2'); '(null)' when none.

    Returns:
        The GPU count (0 when none is configured).
    """
    m = re.search(r"(?:^|,)gres/gpu=(\d+)", tres or "")
    if m:
        return int(m.group(1))
    total = 0
    for item in re.split(r",(?![^()]*\))", gres or ""):
        item = item.split("(")[0]
        bits = item.split(":")
        if bits[0] == "gpu" and len(bits) >= 2 and bits[-1].isdigit():
            total += int(bits[-1])
    return total


def parse_partitions(text: str) -> list[SlurmPartition]:
    """`scontrol show partition -o` -> one SlurmPartition per line."""
    out = []
    for line in text.splitlines():
        kv = _kv(line)
        if "PartitionName" not in kv:
            continue
        out.append(SlurmPartition(name=kv["PartitionName"], default=kv.get("Default", "NO") == "YES",
                                  state=kv.get("State", "UP"), max_time_min=parse_time_min(kv.get("MaxTime", "")),
                                  max_nodes=_int(kv.get("MaxNodes")), max_cpus_per_node=_int(kv.get("MaxCPUsPerNode")),
                                  max_mem_mib_per_node=_int(kv.get("MaxMemPerNode"))))
    return out


def _int(v: str | None) -> int | None:
    """A numeric limit; None for UNLIMITED / absent."""
    return int(v) if v and v.isdigit() else None


def parse_nodes(text: str) -> list[SlurmNode]:
    """`scontrol show node -o` -> one SlurmNode per line (CPUs: CPUEfctv, else CPUTot)."""
    out = []
    for line in text.splitlines():
        kv = _kv(line)
        if "NodeName" not in kv:
            continue
        cpus = kv.get("CPUEfctv") or kv.get("CPUTot") or "0"
        mem = kv.get("RealMemory", "0")
        parts = kv.get("Partitions", "")
        out.append(SlurmNode(name=kv["NodeName"], cpus=int(cpus) if cpus.isdigit() else 0,
                             mem_mib=int(mem) if mem.isdigit() else 0, gpus=parse_gpus(kv.get("CfgTRES", ""), kv.get("Gres", "")),
                             state=kv.get("State", ""), partitions=tuple(p for p in parts.split(",") if p)))
    return out


def _at_most(values: list[int], unit: str, where: str) -> str:
    hi = max(values)
    return f"{hi:,} {unit} on every node of {where}" if min(values) == hi else f"at most {hi:,} {unit} on any node of {where}"


def check_slurm(req: SlurmRequest, partitions: list[SlurmPartition], nodes: list[SlurmNode]) -> list[str]:
    """Why `req` could never start on this cluster (empty: it can).

    Args:
        req: the job's request.
        partitions: the cluster's partitions.
        nodes: the cluster's nodes.

    Returns:
        One message per resource that no node or limit of the partition can satisfy.
    """
    names = ", ".join(p.name for p in partitions) or "none"
    if req.partition is not None:
        part = next((p for p in partitions if p.name == req.partition), None)
        if part is None:
            return [f"launch: --partition {req.partition}: no such partition (partitions: {names})"]
    else:
        part = next((p for p in partitions if p.default), None)
        if part is None:
            return [f"launch: no --partition given and the cluster has no default partition (partitions: {names})"]
    where = f"partition {part.name}"
    problems = []
    if part.state.upper() == "INACTIVE":
        problems.append(f"launch: {where} is INACTIVE (it accepts no jobs)")
    if part.max_time_min is not None and req.time_min > part.max_time_min:
        problems.append(f"launch: --time-min {req.time_min} > MaxTime of {where} ({part.max_time_min} min)")
    if part.max_nodes is not None and req.nodes > part.max_nodes:
        problems.append(f"launch: {req.nodes} nodes > MaxNodes of {where} ({part.max_nodes} per job)")
    if part.max_cpus_per_node is not None and req.cpus_per_node > part.max_cpus_per_node:
        problems.append(f"launch: --cpus-per-task {req.cpus_per_task} x {req.tasks_per_node} tasks per node = "
                        f"{req.cpus_per_node} CPUs > MaxCPUsPerNode of {where} ({part.max_cpus_per_node})")
    if (part.max_mem_mib_per_node is not None and req.mem_gib is not None
            and req.mem_gib * 1024 > part.max_mem_mib_per_node):
        problems.append(f"launch: --mem-gib {req.mem_gib} = {req.mem_gib * 1024:,} MiB > MaxMemPerNode of {where} "
                        f"({part.max_mem_mib_per_node:,} MiB)")
    members = [n for n in nodes if part.name in n.partitions]
    if not members:
        return problems + [f"launch: {where} has no nodes"]
    need_mib = None if req.mem_gib is None else req.mem_gib * 1024
    if max(n.gpus for n in members) < req.gpus_per_node:
        problems.append(f"launch: {req.gpus_per_node} GPUs per node > {_at_most([n.gpus for n in members], 'GPUs', where)}"
                        " (--gpus-per-node)")
    if max(n.cpus for n in members) < req.cpus_per_node:
        problems.append(f"launch: --cpus-per-task {req.cpus_per_task} x {req.tasks_per_node} tasks per node = "
                        f"{req.cpus_per_node} CPUs > {_at_most([n.cpus for n in members], 'CPUs', where)}")
    if need_mib is not None and max(n.mem_mib for n in members) < need_mib:
        problems.append(f"launch: --mem-gib {req.mem_gib} = {need_mib:,} MiB > "
                        f"{_at_most([n.mem_mib for n in members], 'MiB', where)}")
    if problems:
        return problems
    fit = [n for n in members if n.gpus >= req.gpus_per_node and n.cpus >= req.cpus_per_node
           and (need_mib is None or n.mem_mib >= need_mib)]
    if len(fit) < req.nodes:
        mem = "" if need_mib is None else f", {need_mib:,} MiB"
        problems.append(f"launch: the job needs {req.nodes} nodes with {req.gpus_per_node} GPUs, {req.cpus_per_node} CPUs"
                        f"{mem} each; {where} has {len(fit)} such node{'s' if len(fit) != 1 else ''} "
                        f"({len(members)} in all)")
    return problems


def slurm_request(spec: Any, opts: Any) -> SlurmRequest:
    """The SlurmRequest of a launch (the same allocation the sbatch script and submitit use)."""
    from .allocation import allocate

    a = allocate(spec, opts)
    return SlurmRequest(partition=opts.partition, nodes=a.nodes, tasks_per_node=a.tasks_per_node,
                        gpus_per_node=a.gpus_per_node, cpus_per_task=a.cpus_per_task, mem_gib=a.mem_gib,
                        time_min=a.time_min)


def _scontrol(*args: str) -> str:
    argv = ["scontrol", *args]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    except FileNotFoundError:
        raise UserError("launch: 'scontrol' not found on PATH, cannot check the request against the cluster "
                        "(is this a Slurm login node?)" + SKIP_HINT) from None
    except subprocess.TimeoutExpired:
        raise UserError(f"launch: '{' '.join(argv)}' did not answer in {TIMEOUT_S:.0f} s (is slurmctld up?)"
                        + SKIP_HINT) from None
    if r.returncode != 0:
        raise UserError(f"launch: '{' '.join(argv)}' failed: {' '.join((r.stderr or r.stdout).split())[:300]}"
                        + SKIP_HINT)
    return r.stdout


def slurm_facts(run: Callable[..., str] = _scontrol) -> tuple[list[SlurmPartition], list[SlurmNode]]:
    """The cluster's partitions and nodes, from `scontrol show partition -o` and `scontrol show node -o`."""
    return parse_partitions(run("show", "partition", "-o")), parse_nodes(run("show", "node", "-o"))


def preflight_slurm(spec: Any, opts: Any) -> None:
    """Refuse (UserError naming the resource) a Slurm job that could never start on this cluster."""
    problems = check_slurm(slurm_request(spec, opts), *slurm_facts())
    if problems:
        raise UserError("; ".join(problems) + SKIP_HINT)


# ----------------------------------------------------------------------------------------------- Kubernetes
@dataclass(frozen=True)
class K8sRequest:
    namespace: str
    kind: str                   # the workload Kind: JobSet, PyTorchJob, TrainJob, Job
    crd: str | None             # 'jobsets.jobset.x-k8s.io'; None for built-in kinds
    nodes: int
    gpus_per_node: int
    gpu_resource: str           # 'nvidia.com/gpu'


@dataclass(frozen=True)
class K8sFacts:
    """What the API told; None where it could not be read (forbidden, not served)."""

    namespace_exists: bool | None
    crd_installed: bool | None
    node_gpus: tuple[int, ...] | None     # allocatable GPUs per node


def check_k8s(req: K8sRequest, facts: K8sFacts, install_hint: str = "") -> list[str]:
    """Why `req` could never start (empty: it can, or the API did not let us see).

    Args:
        req: the job's request.
        facts: what the API answered.
        install_hint: what installs the CRD (shown when it is missing).

    Returns:
        One message per missing thing.
    """
    problems = []
    if facts.namespace_exists is False:
        problems.append(f"launch: namespace {req.namespace!r} does not exist (kubectl create namespace {req.namespace})")
    if req.crd and facts.crd_installed is False:
        problems.append(f"launch: the {req.kind} CRD ({req.crd}) is not installed" + (f": {install_hint}" if install_hint else ""))
    if facts.node_gpus:
        fit = sum(1 for g in facts.node_gpus if g >= req.gpus_per_node)
        if fit < req.nodes:
            problems.append(f"launch: the job needs {req.nodes} node{'s' if req.nodes != 1 else ''} with "
                            f"{req.gpus_per_node} {req.gpu_resource} each; the cluster has {fit} "
                            f"(largest node: {max(facts.node_gpus)} {req.gpu_resource})")
    return problems


def _status(e: Exception) -> int | None:
    return getattr(e, "status", None)


def _not_found(e: Exception, name: str) -> bool:
    """A 404 whose Status names `name` (what an API server answers for a missing object; a bare 404 may
    come from a proxy or an emulator that does not serve the resource at all)."""
    import json

    if _status(e) != 404:
        return False
    try:
        details = json.loads(getattr(e, "body", "") or "{}").get("details") or {}
    except (ValueError, AttributeError):
        return False
    return details.get("name") == name


def _exists(read: Callable[[], Any], name: str) -> bool | None:
    """True when `read` succeeds; False when the server says `name` is not found; None when we may not (or
    cannot) see."""
    try:
        read()
        return True
    except Exception as e:  # noqa: BLE001 - ApiException, urllib3 errors
        return False if _not_found(e, name) else None


def k8s_facts(api: Any, namespace: str, crd: str | None, gpu_resource: str) -> K8sFacts:
    """Ask the API (short timeouts) for the namespace, the CRD and the nodes' allocatable GPUs.

    Args:
        api: a kubernetes ApiClient.
        namespace: the run's namespace.
        crd: the CRD name, or None for built-in kinds.
        gpu_resource: the extended resource name of a GPU.

    Returns:
        The K8sFacts.
    """
    from kubernetes import client

    core = client.CoreV1Api(api)
    ext = client.ApiextensionsV1Api(api)
    t = TIMEOUT_S
    ns = _exists(lambda: core.read_namespace(namespace, _request_timeout=t), namespace)
    crd_ok = None if crd is None else _exists(lambda: ext.read_custom_resource_definition(crd, _request_timeout=t), crd)
    gpus: tuple[int, ...] | None
    try:
        items = core.list_node(_request_timeout=t).items or []
        gpus = tuple(_quantity((n.status.allocatable or {}).get(gpu_resource)) for n in items if n.status)
    except Exception:  # noqa: BLE001 - forbidden or not served: not held against the job
        gpus = None
    return K8sFacts(namespace_exists=ns, crd_installed=crd_ok, node_gpus=gpus)


def _quantity(v: Any) -> int:
    try:
        return int(str(v)) if v is not None else 0
    except ValueError:
        return 0


def preflight_k8s(spec: Any, opts: Any, api: Any, resources: dict[str, tuple[str, str, str]],
                  install_hints: dict[str, str]) -> None:
    """Refuse (UserError) a Kubernetes job whose namespace, CRD or GPU nodes are missing.

    Args:
        spec: the run's Spec.
        opts: the LaunchOptions.
        api: a kubernetes ApiClient (launch/k8s.py's).
        resources: Kind -> (group, version, plural) (launch/k8s.py RESOURCES).
        install_hints: Kind -> what installs its CRD (launch/k8s.py INSTALL_HINT).
    """
    from .k8s_profiles import load_profile
    from .k8s_render import API, layout_from_spec

    kind = API[opts.kind][1]
    group, _, plural = resources[kind]
    crd = None if kind == "Job" else f"{plural}.{group}"
    layout = layout_from_spec(spec, opts.gpus_per_node)
    gpu_resource = load_profile(opts.profile).gpu_resource
    req = K8sRequest(namespace=opts.namespace, kind=kind, crd=crd, nodes=layout.nodes,
                     gpus_per_node=layout.gpus_per_node, gpu_resource=gpu_resource)
    problems = check_k8s(req, k8s_facts(api, opts.namespace, crd, gpu_resource), install_hints.get(kind, ""))
    if problems:
        raise UserError("; ".join(problems) + SKIP_HINT)
