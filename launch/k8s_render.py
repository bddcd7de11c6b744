"""Pure renderers for `soraplan launch --cluster k8s`: Spec + LaunchOptions + profile -> plain dicts.

Nothing here touches a cluster or a file. `render_objects` returns the manifests in creation order:
the spec ConfigMap, (the headless Service for an Indexed Job), the NetworkPolicy, then the workload:

  jobset       jobset.x-k8s.io/v1alpha2 JobSet: one replicatedJob "node" (Indexed Job, one pod per node);
               group restart through failurePolicy (backoffLimit 0: any pod failure fails the Job, the
               JobSet recreates all Jobs after the old pods are gone: BlockingRecreate); a pod disruption
               (preemption, eviction, node loss) restarts the group without spending maxRestarts; stable
               DNS through its headless service (network.subdomain).
  pytorchjob   kubeflow.org/v1 PyTorchJob: Master x1 + Worker x(nodes-1); the operator sets MASTER_ADDR,
               PET_*; pods restart in place (OnFailure) and torchrun re-forms the whole group; a failed job
               deletes its still-running pods (cleanPodPolicy: Running).
  trainjob     trainer.kubeflow.org/v1alpha1 TrainJob on a ClusterTrainingRuntime (torch-distributed);
               placement, volumes and RDMA go through runtimePatches.
  indexed-job  batch/v1 Indexed Job + headless Service (pod hostname <name>-<index>.<name>), no CRD; a
               per-index retry budget (backoffLimitPerIndex); disruptions are not counted.

The layout comes from the Spec: world = spec.parallel.world,
GPUs per node = the GPU table's gpus_per_node (or --gpus-per-node), nodes = world / GPUs per node.
Every pod runs the same command line: a POSIX-sh prelude that fills PET_* from MASTER_*/NODE_RANK (or the
other way round), makes node rank 0 the one host of the c10d store (is_host), lets the other pods wait
until the host's DNS name resolves, then `torchrun ... -m soraplan train --config <spec> --run-dir <dir>`.
Sizes (requests, ports, grace periods) come from launch/k8s_sizing.py.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import yaml

from soraplan.planner.errors import UserError
from soraplan.planner.spec import Spec
from soraplan.planner.train import train_budget

from .allocation import split_nodes

from .k8s_names import (check_env_name, check_image, check_label, check_label_value, check_subdomain,
                        object_name, pod_hostnames)
from .k8s_profiles import Profile
from .k8s_sizing import StopTiming, pod_resources, rdma_count, rdzv_port, stop_timing
from .nccl_profiles import job_env

SPEC_DIR = "/etc/soraplan"
SPEC_FILE = f"{SPEC_DIR}/spec.yaml"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MULTUS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
EXCLUSIVE_ANNOTATION = "alpha.jobset.sigs.k8s.io/exclusive-topology"
RUN_LABEL = "soraplan.dev/run"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
REPLICATED_JOB = "node"        # JobSet replicatedJob name; also the Trainer runtime's job + container name
PORT_RANGE_SYSCTL = "net.ipv4.ip_local_port_range"
TRAINER_MASTER_PORT = 29400    # Kubeflow Trainer's torch plugin sets PET_MASTER_PORT to this
DISRUPTION = {"type": "DisruptionTarget", "status": "True"}   # preemption, eviction, node loss, taint

API = {  # kind option -> (apiVersion, kind)
    "jobset": ("jobset.x-k8s.io/v1alpha2", "JobSet"),
    "pytorchjob": ("kubeflow.org/v1", "PyTorchJob"),
    "trainjob": ("trainer.kubeflow.org/v1alpha1", "TrainJob"),
    "indexed-job": ("batch/v1", "Job"),
}


@dataclass(frozen=True)
class Layout:
    """The Spec's layout as the cluster sees it."""

    world: int
    gpus_per_node: int
    nodes: int
    tp: int
    pp: int
    vpp: int
    cp: int
    dp: int
    micro_batch: int
    global_batch: int | None


def layout_from_spec(spec: Spec, gpus_per_node: int | None = None) -> Layout:
    """The spec's layout on nodes: nodes = world / GPUs per node (a world smaller than one node runs on one
    node with `world` GPUs); `gpus_per_node` defaults to the spec's GPU's."""
    par = spec.parallel
    world = par.world
    nodes, per_node = split_nodes(world, gpus_per_node if gpus_per_node is not None
                                  else spec.hardware.spec.gpus_per_node)
    return Layout(world=world, gpus_per_node=per_node, nodes=nodes, tp=par.tp, pp=par.pp, vpp=par.vpp, cp=par.cp,
                  dp=par.dp_size, micro_batch=par.micro_batch, global_batch=par.global_batch)


@dataclass(frozen=True)
class Context:
    """Everything the renderers need, validated once."""

    kind: str
    name: str              # object name (RFC 1123, hostname budget applied)
    run: str               # the run name as the user gave it
    namespace: str
    image: str
    layout: Layout
    gpu: str               # the planned GPU's table name
    profile: Profile
    rdma: str
    pod_security: str      # privileged | baseline | restricted
    queue: str | None
    pvc: str | None        # None: the run directory is an emptyDir (one node, or --ephemeral)
    spec_dump: dict[str, Any]
    train_flags: tuple[str, ...]   # --steps (the plan's step count by default) / --tiny / --save-every
    train_args: tuple[str, ...]
    job_env: dict[str, str]        # always-on + NCCL profile + fabric + debug + launch.env (launch/nccl_profiles)
    max_retries: int
    port: int
    timing: StopTiming
    deadline_s: int | None         # activeDeadlineSeconds (--time-min given)

    @property
    def master_addr(self) -> str:
        """The rank-0 pod's stable DNS name (short form: resolves inside the namespace)."""
        if self.kind == "jobset":
            return f"{pod_hostnames(self.name, 'jobset', 1)[0]}.{self.name}"
        if self.kind == "indexed-job":
            return f"{self.name}-0.{self.name}"
        return "localhost"  # pytorchjob/trainjob: the operator sets PET_MASTER_ADDR / MASTER_ADDR

    @property
    def spec_configmap(self) -> str:
        return f"{self.name}-spec"

    @property
    def run_dir(self) -> str:
        """The run directory `soraplan train --run-dir` uses: <mount_path>/<name> on the checkpoint volume."""
        return f"{self.profile.mount_path}/{self.name}"

    @property
    def host_network(self) -> bool:
        return self.rdma == "host-network"

    @property
    def ipc_lock(self) -> bool:
        """RDMA memory registration pins pages: IPC_LOCK, which Pod Security baseline forbids."""
        return self.rdma != "none" and self.pod_security == "privileged"


def fabric_env(rdma: str, profile: Profile) -> dict[str, str]:
    """NCCL interface settings for the RDMA mode, then the profile's RDMA and extra values.

    none: TCP over the pod's own interface (eth0 in the pod's network namespace);
    device: bootstrap over eth0, data over the RDMA devices of the Multus networks;
    host-network: the hosts' interfaces (eth0 may not exist there): the profile's `rdma.socket_ifname`,
    else every interface but loopback and docker.
    """
    if rdma == "none":
        env = {"NCCL_IB_DISABLE": "1", "NCCL_SOCKET_IFNAME": "eth0"}
    elif rdma == "device":
        env = {"NCCL_IB_DISABLE": "0", "NCCL_SOCKET_IFNAME": "eth0"}
    else:
        env = {"NCCL_IB_DISABLE": "0", "NCCL_SOCKET_IFNAME": profile.rdma.socket_ifname or "^lo,docker0"}
    if rdma != "none":
        env |= profile.rdma.env
    return env | profile.env


def _check_security(kind: str, rdma: str, pod_security: str, profile: Profile) -> None:
    if rdma == "host-network" and kind == "trainjob":
        raise UserError("--rdma host-network: a TrainJob cannot set hostNetwork (the runtime owns the pod spec); "
                        "use --rdma device, or --kind jobset")
    if rdma == "host-network" and pod_security != "privileged":
        raise UserError(f"--pod-security {pod_security}: --rdma host-network needs hostNetwork, which the Pod Security "
                        f"{pod_security} level forbids; use --rdma device (RDMA through device resources)")
    if kind == "trainjob" and profile.env_from_secrets:
        raise UserError("profile.env_from_secrets: a TrainJob cannot take envFrom (the runtime owns the container); "
                        "use profile.secret_env")


def make_context(spec: Spec, opts: Any, profile: Profile) -> Context:
    """Validate the options against the spec's layout and the cluster profile, once."""
    layout = layout_from_spec(spec, opts.gpus_per_node)
    rdma = opts.rdma if opts.rdma != "none" else profile.rdma.mode
    _check_security(opts.kind, rdma, opts.pod_security, profile)
    nets = profile.rdma.networks
    rails = rdma_count(profile, layout.gpus_per_node)
    if rdma == "device" and isinstance(nets, tuple) and len(nets) != rails:
        raise UserError(f"profile.rdma.networks: {len(nets)} networks for {rails} RDMA devices per pod "
                        "(one network per rail)")
    pvc = check_subdomain(opts.pvc, "--pvc") if opts.pvc else None
    if pvc is None and layout.nodes > 1 and not opts.ephemeral:
        raise UserError(f"--pvc: a {layout.nodes}-node run needs checkpoint storage every pod mounts (a ReadWriteMany "
                        "PersistentVolumeClaim): give --pvc CLAIM, or --ephemeral to keep checkpoints only in the pods")
    for k in opts.env:
        check_env_name(k, "launch.env")
    gpu = spec.hardware.spec.name
    if profile.gpu_labels and gpu not in profile.gpu_labels:
        raise UserError(f"profile.gpu_labels: no node labels for the planned GPU {gpu!r} "
                        f"(the profile knows {', '.join(sorted(profile.gpu_labels))})")
    flags = list(opts.train_flags())
    if opts.steps is None:  # the plan's step count: the trainer's own default would stop early
        flags = ["--steps", str(train_budget(spec).steps)] + flags
    name = object_name(opts.name, opts.kind, layout.nodes)
    deadline = opts.time_min * 60 if "time_min" in opts.model_fields_set else None
    return Context(
        kind=opts.kind, name=name, run=opts.name,
        namespace=check_label(opts.namespace, "--namespace"), image=check_image(opts.image), layout=layout,
        gpu=gpu, profile=profile, rdma=rdma, pod_security=opts.pod_security,
        queue=check_label_value(opts.queue, "--queue") if opts.queue else None, pvc=pvc,
        spec_dump=spec.model_dump(mode="json"), train_flags=tuple(flags), train_args=tuple(opts.train_args),
        job_env=job_env(opts.nccl_profile, opts.debug, dict(opts.env), fabric=fabric_env(rdma, profile)),
        max_retries=opts.max_retries, port=rdzv_port(profile, name, rdma == "host-network"),
        timing=stop_timing(spec, profile, opts.grace_s), deadline_s=deadline)


# --------------------------------------------------------------------------------------------------
# the command line (identical under every kind)

def train_argv(ctx: Context) -> list[str]:
    """`soraplan train` with the spec (ConfigMap), the layout flags spelled out for humans, the run directory."""
    lo = ctx.layout
    argv = ["--config", SPEC_FILE, "--tp", str(lo.tp), "--pp", str(lo.pp), "--vpp", str(lo.vpp), "--cp", str(lo.cp),
            "--dp", str(lo.dp), "--gpus", str(lo.world), "--micro-batch", str(lo.micro_batch)]
    if lo.global_batch is not None:
        argv += ["--global-batch", str(lo.global_batch)]
    argv += list(ctx.train_flags)
    # one run directory, the same path in every pod; a restarted group continues from its latest checkpoint
    argv += ["--run-dir", ctx.run_dir, "--resume", "auto"]
    return argv + list(ctx.train_args)


def join_timeout_s(ctx: Context) -> int:
    return ctx.profile.rdzv_join_timeout_s


def command_script(ctx: Context) -> str:
    """POSIX sh: PET_* <-> MASTER_ADDR/MASTER_PORT/NODE_RANK, whichever the controller set, then torchrun.

    Under JobSet / Indexed Job the manifest sets both families; PyTorchJob and TrainJob operators set
    PET_* (and MASTER_*, RANK); the defaults after ':=' are the plan's values. Node rank 0 hosts the c10d
    store (`is_host`), whatever its hostname resolves to; the others wait for the host's DNS name. Every
    user value is shell-quoted.
    """
    lo = ctx.layout
    train = " ".join(shlex.quote(a) for a in train_argv(ctx))
    join = join_timeout_s(ctx)
    return "\n".join([
        "set -eu",
        f': "${{PET_NNODES:={lo.nodes}}}"',
        f': "${{PET_NPROC_PER_NODE:={lo.gpus_per_node}}}"',
        ': "${PET_MASTER_ADDR:=${MASTER_ADDR:-localhost}}"',
        f': "${{PET_MASTER_PORT:=${{MASTER_PORT:-{ctx.port}}}}}"',
        ': "${PET_NODE_RANK:=${NODE_RANK:-${JOB_COMPLETION_INDEX:-${RANK:-}}}}"',
        'if [ -z "$PET_NODE_RANK" ]; then',
        '  if [ "$PET_NNODES" = 1 ]; then PET_NODE_RANK=0; else',
        '    echo "soraplan: no node rank (PET_NODE_RANK, NODE_RANK, JOB_COMPLETION_INDEX or RANK)" >&2; exit 2; fi',
        'fi',
        'export MASTER_ADDR="$PET_MASTER_ADDR" MASTER_PORT="$PET_MASTER_PORT" NODE_RANK="$PET_NODE_RANK"',
        '# exactly one pod hosts the c10d store: node rank 0 (not a hostname match, which depends on DNS)',
        'if [ "$PET_NODE_RANK" = 0 ]; then IS_HOST=1; else IS_HOST=0; fi',
        'if [ "$IS_HOST" = 0 ] && command -v getent >/dev/null 2>&1; then',
        '  waited=0',
        '  until getent hosts "$PET_MASTER_ADDR" >/dev/null 2>&1; do',
        f'    if [ "$waited" -ge {join} ]; then',
        f'      echo "soraplan: rendezvous host $PET_MASTER_ADDR does not resolve after {join} s" >&2; exit 1; fi',
        '    sleep 5; waited=$((waited + 5))',
        '  done',
        'fi',
        'exec torchrun --nnodes="$PET_NNODES" --nproc-per-node="$PET_NPROC_PER_NODE" --node-rank="$PET_NODE_RANK" \\',
        f'  --rdzv-backend=c10d --rdzv-endpoint="$PET_MASTER_ADDR:$PET_MASTER_PORT" --rdzv-id={shlex.quote(ctx.name)} \\',
        f'  --rdzv-conf="is_host=$IS_HOST,join_timeout={join}" --max-restarts="${{PET_MAX_RESTARTS:-0}}" \\',
        f"  -m soraplan train {train}",
        "",
    ])


# --------------------------------------------------------------------------------------------------
# pieces

def labels(ctx: Context) -> dict[str, str]:
    return {"app.kubernetes.io/name": "soraplan", "app.kubernetes.io/managed-by": "soraplan", RUN_LABEL: ctx.name}


def metadata(ctx: Context, name: str, queue: bool = False) -> dict[str, Any]:
    lab = labels(ctx)
    if queue and ctx.queue:
        lab[QUEUE_LABEL] = ctx.queue
    return {"name": name, "namespace": ctx.namespace, "labels": lab}


def _kv(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _rank_from_index(name: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}}


def env(ctx: Context) -> list[dict[str, Any]]:
    """Container environment: rendezvous (where the controller does not set it), stop timing, run info,
    the job environment shared with Slurm (launch/nccl_profiles.job_env), then the profile's secrets."""
    lo, out = ctx.layout, []
    if ctx.kind in ("jobset", "indexed-job"):
        port = str(ctx.port)
        out += [_kv("MASTER_ADDR", ctx.master_addr), _kv("MASTER_PORT", port), _rank_from_index("NODE_RANK"),
                _kv("PET_NNODES", str(lo.nodes)), _kv("PET_NPROC_PER_NODE", str(lo.gpus_per_node)),
                _rank_from_index("PET_NODE_RANK"), _kv("PET_MASTER_ADDR", ctx.master_addr), _kv("PET_MASTER_PORT", port)]
    # group restart: JobSet recreates every pod (torchrun restarts nothing); elsewhere pods restart in place
    # and torchrun's agents re-form the whole group up to max_retries times.
    out.append(_kv("PET_MAX_RESTARTS", "0" if ctx.kind == "jobset" else str(ctx.max_retries)))
    # torchrun forwards SIGTERM to the trainers and SIGKILLs them after this long (its default is 30 s)
    shutdown = str(ctx.timing.shutdown_timeout_s)
    out += [_kv("PET_SHUTDOWN_TIMEOUT", shutdown), _kv("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", shutdown)]
    out.append(_kv("SORAPLAN_RUN", ctx.run))
    secrets = ctx.profile.secret_env
    out += [_kv(k, v) for k, v in ctx.job_env.items()]
    out = [e for e in out if e["name"] not in secrets]
    out += [{"name": k, "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}} for k, ref in secrets.items()]
    return out


def env_from(ctx: Context) -> list[dict[str, Any]]:
    return [{"secretRef": {"name": s}} for s in ctx.profile.env_from_secrets]


def resources(ctx: Context) -> dict[str, Any]:
    """GPUs, RDMA rails, CPU and memory (launch/k8s_sizing.pod_resources)."""
    return pod_resources(ctx.profile, ctx.gpu, ctx.layout.gpus_per_node, ctx.rdma)


def volume_mounts(ctx: Context) -> list[dict[str, Any]]:
    return [{"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
            {"name": "checkpoints", "mountPath": ctx.profile.mount_path}]


def volumes(ctx: Context) -> list[dict[str, Any]]:
    ckpt: dict[str, Any] = ({"persistentVolumeClaim": {"claimName": ctx.pvc}} if ctx.pvc else {"emptyDir": {}})
    return [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{ctx.profile.shm_gib}Gi"}},
        {"name": "spec", "configMap": {"name": ctx.spec_configmap}},
        {"name": "checkpoints", **ckpt},
    ]


def security_context(ctx: Context) -> dict[str, Any] | None:
    """Container: IPC_LOCK for RDMA (privileged level only); the restricted level's required settings."""
    if ctx.pod_security == "restricted":
        return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}
    return {"capabilities": {"add": ["IPC_LOCK"]}} if ctx.ipc_lock else None


def pod_security_context(ctx: Context) -> dict[str, Any]:
    """Pod: NCCL's ephemeral ports in a known range (for the NetworkPolicy), seccomp and fsGroup."""
    out: dict[str, Any] = {}
    if not ctx.host_network:  # a pod on the host's network namespace cannot set net.* sysctls
        lo, hi = ctx.profile.nccl_port_range
        out["sysctls"] = [{"name": PORT_RANGE_SYSCTL, "value": f"{lo} {hi}"}]
    if ctx.pod_security == "restricted":
        out["runAsNonRoot"] = True
        out["seccompProfile"] = {"type": "RuntimeDefault"}
    if ctx.profile.fs_group is not None:
        out["fsGroup"] = ctx.profile.fs_group
    return out


def container(ctx: Context, name: str) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": ctx.image, "command": ["/bin/sh", "-c", command_script(ctx)],
                         "env": env(ctx), "resources": resources(ctx), "volumeMounts": volume_mounts(ctx)}
    if env_from(ctx):
        c["envFrom"] = env_from(ctx)
    if ctx.kind == "pytorchjob":  # the operator reads MASTER_PORT from the port with this name
        c["ports"] = [{"name": "pytorchjob-port", "containerPort": ctx.port}]
    else:
        c["ports"] = [{"name": "rdzv", "containerPort": ctx.port}]
    sc = security_context(ctx)
    if sc:
        c["securityContext"] = sc
    return c


def pod_annotations(ctx: Context) -> dict[str, str]:
    nets = ctx.profile.rdma.networks
    if ctx.rdma == "device" and nets:
        return {MULTUS_ANNOTATION: nets if isinstance(nets, str) else ",".join(nets)}
    return {}


def node_selector(ctx: Context) -> dict[str, str]:
    """The profile's selector plus the node labels of the planned GPU."""
    return {**ctx.profile.node_selector, **ctx.profile.gpu_labels.get(ctx.gpu, {})}


def placement(ctx: Context) -> dict[str, Any]:
    """nodeSelector, tolerations, service account, pull secrets from the profile."""
    p, out = ctx.profile, dict[str, Any]()
    if node_selector(ctx):
        out["nodeSelector"] = node_selector(ctx)
    if p.tolerations:
        out["tolerations"] = [t.manifest() for t in p.tolerations]
    if p.service_account:
        out["serviceAccountName"] = p.service_account
    if p.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": s} for s in p.image_pull_secrets]
    return out


def pod_template(ctx: Context, container_name: str, restart_policy: str, subdomain: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": restart_policy, "terminationGracePeriodSeconds": ctx.timing.grace_s}
    if subdomain:
        spec["subdomain"] = subdomain
    if ctx.host_network:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    if ctx.profile.priority_class:
        spec["priorityClassName"] = ctx.profile.priority_class
    spec.update(placement(ctx))
    if pod_security_context(ctx):
        spec["securityContext"] = pod_security_context(ctx)
    spec["containers"] = [container(ctx, container_name)]
    spec["volumes"] = volumes(ctx)
    meta: dict[str, Any] = {"labels": labels(ctx)}
    if pod_annotations(ctx):
        meta["annotations"] = pod_annotations(ctx)
    return {"metadata": meta, "spec": spec}


def _ttl(spec: dict[str, Any], ctx: Context) -> None:
    if ctx.profile.ttl_after_finished_s is not None:
        spec["ttlSecondsAfterFinished"] = ctx.profile.ttl_after_finished_s


# --------------------------------------------------------------------------------------------------
# objects

def spec_configmap(ctx: Context) -> dict[str, Any]:
    text = yaml.safe_dump(ctx.spec_dump, sort_keys=False)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(ctx, ctx.spec_configmap),
            "data": {"spec.yaml": text}}


def network_policy(ctx: Context) -> dict[str, Any]:
    """Ingress to the run's pods only from the run's pods, on the rendezvous port and NCCL's port range."""
    lo, hi = ctx.profile.nccl_port_range
    rdzv = [ctx.port] if ctx.kind != "trainjob" else sorted({ctx.port, TRAINER_MASTER_PORT})
    ports: list[dict[str, Any]] = [{"protocol": "TCP", "port": p} for p in rdzv]
    ports.append({"protocol": "TCP", "port": lo, "endPort": hi})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata(ctx, ctx.name),
            "spec": {"podSelector": {"matchLabels": {RUN_LABEL: ctx.name}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {RUN_LABEL: ctx.name}}}],
                                  "ports": ports}]}}


def jobset(ctx: Context) -> dict[str, Any]:
    n = ctx.layout.nodes
    job_spec: dict[str, Any] = {
        "parallelism": n, "completions": n, "completionMode": "Indexed",
        "backoffLimit": 0,  # a pod failure fails the Job -> the JobSet restarts the whole group
        # a disrupted pod fails its Job with reason PodFailurePolicy: the JobSet rule below restarts the
        # group without spending maxRestarts
        "podFailurePolicy": {"rules": [{"action": "FailJob", "onPodConditions": [dict(DISRUPTION)]}]},
        "template": pod_template(ctx, "trainer", "Never")}
    if ctx.deadline_s:
        job_spec["activeDeadlineSeconds"] = ctx.deadline_s
    rules = [{"name": "disruptionRestartsFree", "action": "RestartJobSetAndIgnoreMaxRestarts",
              "onJobFailureReasons": ["PodFailurePolicy"]},
             {"name": "deadlineFails", "action": "FailJobSet", "onJobFailureReasons": ["DeadlineExceeded"]}]
    spec: dict[str, Any] = {
        "network": {"enableDNSHostnames": True, "subdomain": ctx.name, "publishNotReadyAddresses": True},
        # BlockingRecreate: the new pods start only after every old pod is gone (no stale pod 0 in DNS)
        "failurePolicy": {"maxRestarts": ctx.max_retries, "restartStrategy": "BlockingRecreate", "rules": rules},
        "successPolicy": {"operator": "All", "targetReplicatedJobs": [REPLICATED_JOB]},
        "replicatedJobs": [{"name": REPLICATED_JOB, "replicas": 1,
                            "template": {"metadata": {"labels": labels(ctx)}, "spec": job_spec}}],
    }
    _ttl(spec, ctx)
    if ctx.queue:
        spec["suspend"] = True
    api, kind = API["jobset"]
    meta = metadata(ctx, ctx.name, queue=True)
    if ctx.profile.exclusive_topology:
        meta["annotations"] = {EXCLUSIVE_ANNOTATION: ctx.profile.exclusive_topology}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def pytorchjob(ctx: Context) -> dict[str, Any]:
    n = ctx.layout.nodes

    def replica(count: int) -> dict[str, Any]:
        return {"replicas": count, "restartPolicy": "OnFailure", "template": pod_template(ctx, "pytorch", "OnFailure")}

    replicas = {"Master": replica(1)}
    if n > 1:
        replicas["Worker"] = replica(n - 1)
    run_policy: dict[str, Any] = {"cleanPodPolicy": "Running",   # a failed job frees its GPUs at once
                                  # backoff: max_retries group restarts x one pod restart per node each
                                  "backoffLimit": ctx.max_retries * n}
    if ctx.deadline_s:
        run_policy["activeDeadlineSeconds"] = ctx.deadline_s
    _ttl(run_policy, ctx)
    if ctx.profile.priority_class:
        run_policy["schedulingPolicy"] = {"priorityClass": ctx.profile.priority_class}
    if ctx.queue:
        run_policy["suspend"] = True
    api, kind = API["pytorchjob"]
    return {"apiVersion": api, "kind": kind, "metadata": metadata(ctx, ctx.name, queue=True),
            "spec": {"nprocPerNode": str(ctx.layout.gpus_per_node), "runPolicy": run_policy,
                     "pytorchReplicaSpecs": replicas}}


TRAINJOB_POD_PATCH = ("nodeSelector", "tolerations", "serviceAccountName", "imagePullSecrets", "securityContext")


def trainjob(ctx: Context) -> dict[str, Any]:
    """The TrainJob: what the runtime lets a job set (runtimePatches has no priorityClassName, hostNetwork,
    envFrom or restart policy: the ClusterTrainingRuntime owns those)."""
    c = container(ctx, REPLICATED_JOB)
    pod = pod_template(ctx, REPLICATED_JOB, "Never")
    pod_patch: dict[str, Any] = {k: v for k, v in pod["spec"].items() if k in TRAINJOB_POD_PATCH}
    pod_patch["terminationGracePeriodSeconds"] = ctx.timing.grace_s
    pod_patch["volumes"] = volumes(ctx)
    cpatch: dict[str, Any] = {"name": REPLICATED_JOB, "volumeMounts": volume_mounts(ctx)}
    if "securityContext" in c:
        cpatch["securityContext"] = c["securityContext"]
    pod_patch["containers"] = [cpatch]
    trainer: dict[str, Any] = {"image": ctx.image, "command": c["command"], "env": c["env"],
                               "numNodes": ctx.layout.nodes, "numProcPerNode": ctx.layout.gpus_per_node,
                               "resourcesPerNode": c["resources"]}
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                       "name": ctx.profile.trainjob_runtime},
        "trainer": trainer,
        "runtimePatches": [{"manager": "soraplan.dev/launch", "trainingRuntimeSpec": {"template": {"spec": {
            "replicatedJobs": [{"name": REPLICATED_JOB, "template": {"spec": {"template": {
                "metadata": pod["metadata"], "spec": pod_patch}}}}]}}}}],
    }
    if ctx.deadline_s:
        spec["activeDeadlineSeconds"] = ctx.deadline_s
    if ctx.queue:
        spec["suspend"] = True
    api, kind = API["trainjob"]
    return {"apiVersion": api, "kind": kind, "metadata": metadata(ctx, ctx.name, queue=True), "spec": spec}


def headless_service(ctx: Context) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(ctx, ctx.name),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {RUN_LABEL: ctx.name},
                     "ports": [{"name": "rdzv", "port": ctx.port, "targetPort": ctx.port}]}}


def indexed_job(ctx: Context) -> dict[str, Any]:
    n = ctx.layout.nodes
    spec: dict[str, Any] = {"completionMode": "Indexed", "completions": n, "parallelism": n,
                            # each node index has its own retry budget: one failed store host spends one
                            # retry of its own index, not one of every pod's; the first index out of retries
                            # fails the Job (maxFailedIndexes 0)
                            "backoffLimitPerIndex": ctx.max_retries, "maxFailedIndexes": 0,
                            # preemption, eviction, node loss: a new pod, no retry spent
                            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [dict(DISRUPTION)]}]},
                            "template": pod_template(ctx, "trainer", "Never", subdomain=ctx.name)}
    if ctx.deadline_s:
        spec["activeDeadlineSeconds"] = ctx.deadline_s
    _ttl(spec, ctx)
    if ctx.queue:
        spec["suspend"] = True
    api, kind = API["indexed-job"]
    return {"apiVersion": api, "kind": kind, "metadata": metadata(ctx, ctx.name, queue=True), "spec": spec}


def render_objects(spec: Spec, opts: Any, profile: Profile) -> list[dict[str, Any]]:
    """The manifests, in creation order (the workload last)."""
    ctx = make_context(spec, opts, profile)
    objs = [spec_configmap(ctx)]
    if ctx.kind == "indexed-job":
        objs.append(headless_service(ctx))
    if ctx.profile.network_policy and not ctx.host_network:  # policies do not apply to host-network pods
        objs.append(network_policy(ctx))
    objs.append({"jobset": jobset, "pytorchjob": pytorchjob, "trainjob": trainjob, "indexed-job": indexed_job}[ctx.kind](ctx))
    return objs


# --------------------------------------------------------------------------------------------------
# YAML text

class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # every manifest spelled out, no &anchors
        return True


def _str(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
    if "\n" in s:
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", s)


_Dumper.add_representer(str, _str)


def to_yaml(obj: dict[str, Any]) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def to_yaml_documents(objs: list[dict[str, Any]]) -> str:
    return "---\n" + "---\n".join(to_yaml(o) for o in objs)


def file_name(obj: dict[str, Any], index: int) -> str:
    """One file per object: NN-<kind>-<name>.yaml (creation order kept by the prefix)."""
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
