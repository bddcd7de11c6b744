"""Pure renderers for `soraplan launch --cluster k8s`: Spec + LaunchOptions + profile -> plain dicts.

Nothing here touches a cluster or a file. `render_objects` returns the manifests in creation order:
the spec ConfigMap, (the headless Service for an Indexed Job), then the workload:

  jobset       jobset.x-k8s.io/v1alpha2 JobSet: one replicatedJob "node" (Indexed Job, one pod per node);
               group restart through failurePolicy (backoffLimit 0: any pod failure fails the Job, the
               JobSet recreates all Jobs); stable DNS through its headless service (network.subdomain).
  pytorchjob   kubeflow.org/v1 PyTorchJob: Master x1 + Worker x(nodes-1); the operator sets MASTER_ADDR,
               PET_*; pods restart in place (OnFailure) and torchrun re-forms the whole group.
  trainjob     trainer.kubeflow.org/v1alpha1 TrainJob on a ClusterTrainingRuntime (torch-distributed);
               placement, volumes and RDMA go through runtimePatches.
  indexed-job  batch/v1 Indexed Job + headless Service (pod hostname <name>-<index>.<name>), no CRD.

The layout comes from the Spec: world = spec.parallel.world,
GPUs per node = the GPU table's gpus_per_node (or --gpus-per-node), nodes = world / GPUs per node.
Every pod runs the same command line: a POSIX-sh prelude that fills PET_* from MASTER_*/NODE_RANK (or the
other way round), then `torchrun ... --rdzv-backend=c10d -m soraplan train --config <spec> <layout flags>`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import yaml

from soraplan.planner.errors import UserError
from soraplan.planner.spec import Spec

from .allocation import split_nodes

from .k8s_names import (check_env_name, check_image, check_label, check_label_value, check_subdomain,
                        object_name, pod_hostnames)
from .k8s_profiles import Profile

SPEC_DIR = "/etc/soraplan"
SPEC_FILE = f"{SPEC_DIR}/spec.yaml"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MULTUS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
RUN_LABEL = "soraplan.dev/run"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
REPLICATED_JOB = "node"        # JobSet replicatedJob name; also the Trainer runtime's job + container name

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
    profile: Profile
    rdma: str
    queue: str | None
    pvc: str | None
    spec_dump: dict[str, Any]
    train_flags: tuple[str, ...]   # LaunchOptions.train_flags(): --steps / --tiny / --save-every
    train_args: tuple[str, ...]
    env: dict[str, str]
    debug: bool
    max_retries: int
    grace_s: int

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
    def run_dir(self) -> str | None:
        return f"{self.profile.mount_path}/{self.name}" if self.pvc else None


def make_context(spec: Spec, opts: Any, profile: Profile) -> Context:
    """Validate the options against the spec's layout and the cluster profile, once."""
    layout = layout_from_spec(spec, opts.gpus_per_node)
    rdma = opts.rdma if opts.rdma != "none" else profile.rdma.mode
    if opts.kind == "trainjob" and rdma == "host-network":
        raise UserError("--rdma host-network: a TrainJob cannot set hostNetwork (the runtime owns the pod spec); "
                        "use --rdma device, or --kind jobset")
    for k in opts.env:
        check_env_name(k, "launch.env")
    return Context(
        kind=opts.kind, name=object_name(opts.name, opts.kind, layout.nodes), run=opts.name,
        namespace=check_label(opts.namespace, "--namespace"), image=check_image(opts.image), layout=layout,
        profile=profile, rdma=rdma,
        queue=check_label_value(opts.queue, "--queue") if opts.queue else None,
        pvc=check_subdomain(opts.pvc, "--pvc") if opts.pvc else None,
        spec_dump=spec.model_dump(mode="json"), train_flags=tuple(opts.train_flags()),
        train_args=tuple(opts.train_args), env=dict(opts.env), debug=opts.debug, max_retries=opts.max_retries,
        grace_s=opts.grace_s)


# --------------------------------------------------------------------------------------------------
# the command line (identical under every kind)

def train_argv(ctx: Context) -> list[str]:
    """`soraplan train` with the spec (ConfigMap) and the layout flags spelled out for humans."""
    lo = ctx.layout
    argv = ["--config", SPEC_FILE, "--tp", str(lo.tp), "--pp", str(lo.pp), "--vpp", str(lo.vpp), "--cp", str(lo.cp),
            "--dp", str(lo.dp), "--gpus", str(lo.world), "--micro-batch", str(lo.micro_batch)]
    if lo.global_batch is not None:
        argv += ["--global-batch", str(lo.global_batch)]
    argv += list(ctx.train_flags)
    if ctx.pvc:
        argv += ["--resume", "auto"]   # a restarted group continues from the latest complete checkpoint
    return argv + list(ctx.train_args)


def command_script(ctx: Context) -> str:
    """POSIX sh: PET_* <-> MASTER_ADDR/MASTER_PORT/NODE_RANK, whichever the controller set, then torchrun.

    Under JobSet / Indexed Job the manifest sets both families; PyTorchJob and TrainJob operators set
    PET_* (and MASTER_*); the defaults after ':=' are the plan's values. Every user value is shell-quoted.
    """
    lo = ctx.layout
    train = " ".join(shlex.quote(a) for a in train_argv(ctx))
    return "\n".join([
        "set -eu",
        f': "${{PET_NNODES:={lo.nodes}}}"',
        f': "${{PET_NPROC_PER_NODE:={lo.gpus_per_node}}}"',
        ': "${PET_MASTER_ADDR:=${MASTER_ADDR:-localhost}}"',
        f': "${{PET_MASTER_PORT:=${{MASTER_PORT:-{ctx.profile.master_port}}}}}"',
        ': "${PET_NODE_RANK:=${NODE_RANK:-${JOB_COMPLETION_INDEX:-0}}}"',
        'export MASTER_ADDR="$PET_MASTER_ADDR" MASTER_PORT="$PET_MASTER_PORT" NODE_RANK="$PET_NODE_RANK"',
        'exec torchrun --nnodes="$PET_NNODES" --nproc-per-node="$PET_NPROC_PER_NODE" --node-rank="$PET_NODE_RANK" \\',
        f'  --rdzv-backend=c10d --rdzv-endpoint="$PET_MASTER_ADDR:$PET_MASTER_PORT" --rdzv-id={shlex.quote(ctx.name)} \\',
        '  --max-restarts="${PET_MAX_RESTARTS:-0}" \\',
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
    """Container environment: rendezvous (where the controller does not set it), run info, NCCL, user."""
    lo, out = ctx.layout, []
    if ctx.kind in ("jobset", "indexed-job"):
        port = str(ctx.profile.master_port)
        out += [_kv("MASTER_ADDR", ctx.master_addr), _kv("MASTER_PORT", port), _rank_from_index("NODE_RANK"),
                _kv("PET_NNODES", str(lo.nodes)), _kv("PET_NPROC_PER_NODE", str(lo.gpus_per_node)),
                _rank_from_index("PET_NODE_RANK"), _kv("PET_MASTER_ADDR", ctx.master_addr), _kv("PET_MASTER_PORT", port)]
    # group restart: JobSet recreates every pod (torchrun restarts nothing); elsewhere pods restart in place
    # and torchrun's agents re-form the whole group up to max_retries times.
    out.append(_kv("PET_MAX_RESTARTS", "0" if ctx.kind == "jobset" else str(ctx.max_retries)))
    out += [_kv("SORAPLAN_RUN", ctx.run), _kv("PYTHONUNBUFFERED", "1"), _kv("CUDA_DEVICE_MAX_CONNECTIONS", "1")]
    if ctx.run_dir:
        out.append(_kv("SORAPLAN_RUN_DIR", ctx.run_dir))
    if ctx.debug:
        out += [_kv("NCCL_DEBUG", "INFO"), _kv("TORCH_DISTRIBUTED_DEBUG", "DETAIL"), _kv("TORCH_SHOW_CPP_STACKTRACES", "1")]
    extra: dict[str, str] = {}
    if ctx.rdma != "none":
        extra.update(ctx.profile.rdma.env)
    extra.update(ctx.profile.env)
    extra.update(ctx.env)
    # profile/user values override soraplan's defaults of the same name (one entry per name)
    return [e for e in out if e["name"] not in extra] + [_kv(k, v) for k, v in extra.items()]


def resources(ctx: Context) -> dict[str, Any]:
    """requests = limits: GPUs per node (+ RDMA devices, CPU, memory from the profile)."""
    # quantities as strings (the API's canonical form; the typed client refuses bare integers)
    res: dict[str, Any] = {ctx.profile.gpu_resource: str(ctx.layout.gpus_per_node)}
    if ctx.rdma == "device":
        res[ctx.profile.rdma.resource] = str(ctx.profile.rdma.count)
    if ctx.profile.cpu:
        res["cpu"] = str(ctx.profile.cpu)
    if ctx.profile.memory_gib:
        res["memory"] = f"{ctx.profile.memory_gib}Gi"
    return {"requests": dict(res), "limits": dict(res)}


def volume_mounts(ctx: Context) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"},
                                 {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}]
    if ctx.pvc:
        out.append({"name": "checkpoints", "mountPath": ctx.profile.mount_path})
    return out


def volumes(ctx: Context) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{ctx.profile.shm_gib}Gi"}},
        {"name": "spec", "configMap": {"name": ctx.spec_configmap}},
    ]
    if ctx.pvc:
        out.append({"name": "checkpoints", "persistentVolumeClaim": {"claimName": ctx.pvc}})
    return out


def security_context(ctx: Context) -> dict[str, Any] | None:
    """RDMA memory registration pins pages: IPC_LOCK."""
    return {"capabilities": {"add": ["IPC_LOCK"]}} if ctx.rdma != "none" else None


def container(ctx: Context, name: str) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": ctx.image, "command": ["/bin/sh", "-c", command_script(ctx)],
                         "env": env(ctx), "resources": resources(ctx), "volumeMounts": volume_mounts(ctx)}
    if ctx.kind == "pytorchjob":  # the operator reads MASTER_PORT from the port with this name
        c["ports"] = [{"name": "pytorchjob-port", "containerPort": ctx.profile.master_port}]
    else:
        c["ports"] = [{"name": "rdzv", "containerPort": ctx.profile.master_port}]
    if ctx.run_dir:
        c["workingDir"] = ctx.run_dir
    sc = security_context(ctx)
    if sc:
        c["securityContext"] = sc
    return c


def pod_annotations(ctx: Context) -> dict[str, str]:
    if ctx.rdma == "device" and ctx.profile.rdma.networks:
        return {MULTUS_ANNOTATION: ctx.profile.rdma.networks}
    return {}


def placement(ctx: Context) -> dict[str, Any]:
    """nodeSelector, tolerations, service account, pull secrets, priority from the profile."""
    p, out = ctx.profile, dict[str, Any]()
    if p.node_selector:
        out["nodeSelector"] = dict(p.node_selector)
    if p.tolerations:
        out["tolerations"] = [t.manifest() for t in p.tolerations]
    if p.service_account:
        out["serviceAccountName"] = p.service_account
    if p.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": s} for s in p.image_pull_secrets]
    return out


def pod_template(ctx: Context, container_name: str, restart_policy: str, subdomain: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": restart_policy, "terminationGracePeriodSeconds": ctx.grace_s}
    if subdomain:
        spec["subdomain"] = subdomain
    if ctx.rdma == "host-network":
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    if ctx.profile.priority_class:
        spec["priorityClassName"] = ctx.profile.priority_class
    spec.update(placement(ctx))
    spec["containers"] = [container(ctx, container_name)]
    spec["volumes"] = volumes(ctx)
    meta: dict[str, Any] = {"labels": labels(ctx)}
    if pod_annotations(ctx):
        meta["annotations"] = pod_annotations(ctx)
    return {"metadata": meta, "spec": spec}


# --------------------------------------------------------------------------------------------------
# objects

def spec_configmap(ctx: Context) -> dict[str, Any]:
    text = yaml.safe_dump(ctx.spec_dump, sort_keys=False)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(ctx, ctx.spec_configmap),
            "data": {"spec.yaml": text}}


def jobset(ctx: Context) -> dict[str, Any]:
    n = ctx.layout.nodes
    job_spec = {"parallelism": n, "completions": n, "completionMode": "Indexed",
                "backoffLimit": 0,  # a pod failure fails the Job -> the JobSet restarts the whole group
                "template": pod_template(ctx, "trainer", "Never")}
    spec: dict[str, Any] = {
        "network": {"enableDNSHostnames": True, "subdomain": ctx.name, "publishNotReadyAddresses": True},
        "failurePolicy": {"maxRestarts": ctx.max_retries, "restartStrategy": "Recreate"},
        "successPolicy": {"operator": "All", "targetReplicatedJobs": [REPLICATED_JOB]},
        "replicatedJobs": [{"name": REPLICATED_JOB, "replicas": 1,
                            "template": {"metadata": {"labels": labels(ctx)}, "spec": job_spec}}],
    }
    if ctx.queue:
        spec["suspend"] = True
    api, kind = API["jobset"]
    return {"apiVersion": api, "kind": kind, "metadata": metadata(ctx, ctx.name, queue=True), "spec": spec}


def pytorchjob(ctx: Context) -> dict[str, Any]:
    n = ctx.layout.nodes

    def replica(count: int) -> dict[str, Any]:
        return {"replicas": count, "restartPolicy": "OnFailure", "template": pod_template(ctx, "pytorch", "OnFailure")}

    replicas = {"Master": replica(1)}
    if n > 1:
        replicas["Worker"] = replica(n - 1)
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None",
                                  # backoff: max_retries group restarts x one pod restart per node each
                                  "backoffLimit": ctx.max_retries * n}
    if ctx.queue:
        run_policy["suspend"] = True
    api, kind = API["pytorchjob"]
    return {"apiVersion": api, "kind": kind, "metadata": metadata(ctx, ctx.name, queue=True),
            "spec": {"nprocPerNode": str(ctx.layout.gpus_per_node), "runPolicy": run_policy,
                     "pytorchReplicaSpecs": replicas}}


def trainjob(ctx: Context) -> dict[str, Any]:
    c = container(ctx, REPLICATED_JOB)
    pod = pod_template(ctx, REPLICATED_JOB, "Never")
    pod_patch: dict[str, Any] = {k: v for k, v in pod["spec"].items()
                                 if k in ("nodeSelector", "tolerations", "serviceAccountName", "imagePullSecrets")}
    pod_patch["terminationGracePeriodSeconds"] = ctx.grace_s
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
    if ctx.queue:
        spec["suspend"] = True
    api, kind = API["trainjob"]
    return {"apiVersion": api, "kind": kind, "metadata": metadata(ctx, ctx.name, queue=True), "spec": spec}


def headless_service(ctx: Context) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(ctx, ctx.name),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {RUN_LABEL: ctx.name},
                     "ports": [{"name": "rdzv", "port": ctx.profile.master_port,
                                "targetPort": ctx.profile.master_port}]}}


def indexed_job(ctx: Context) -> dict[str, Any]:
    n = ctx.layout.nodes
    spec: dict[str, Any] = {"completionMode": "Indexed", "completions": n, "parallelism": n,
                            # pods restart in place; torchrun re-forms the group; budget as for PyTorchJob
                            "backoffLimit": ctx.max_retries * n,
                            "template": pod_template(ctx, "trainer", "OnFailure", subdomain=ctx.name)}
    if ctx.queue:
        spec["suspend"] = True
    api, kind = API["indexed-job"]
    return {"apiVersion": api, "kind": kind, "metadata": metadata(ctx, ctx.name, queue=True), "spec": spec}


def render_objects(spec: Spec, opts: Any, profile: Profile) -> list[dict[str, Any]]:
    """The manifests, in creation order."""
    ctx = make_context(spec, opts, profile)
    objs = [spec_configmap(ctx)]
    if ctx.kind == "indexed-job":
        objs.append(headless_service(ctx))
    objs.append({"jobset": jobset, "pytorchjob": pytorchjob, "trainjob": trainjob, "indexed-job": indexed_job}[ctx.kind](ctx))
    return objs


# --------------------------------------------------------------------------------------------------
# YAML text

class _Dumper(yaml.SafeDumper):
    pass


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
