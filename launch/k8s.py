"""The Kubernetes backend of `soraplan launch/status/logs/cancel` (see launch/backends.py for the seam).

`render` is pure (launch/k8s_render.py builds the dicts). `submit`, `status`, `logs` and `cancel` are the
only code that talks to a cluster, through the official `kubernetes` client (imported inside `_client`):
kubeconfig ($KUBECONFIG or ~/.kube/config) or, inside a pod, the in-cluster service account.
CRDs (JobSet, PyTorchJob, TrainJob) go through CustomObjectsApi; ConfigMap/Service through CoreV1Api, the
NetworkPolicy through NetworkingV1Api and the Indexed Job through BatchV1Api. Before anything is created,
launch/k8s_checks.py reads the checkpoint claim and the TrainJob CRD. API errors become one line (exit 2):
  409 AlreadyExists -> "run exists, use --resume/--force"; 403 -> the verb/resource/namespace missing;
  422 Invalid -> the server's field messages; 404 on a CRD -> the controller is not installed.

The ledger records every created object as a job id "Kind/namespace/name" (workload last): the mapping from
the run name to its object names. Exactly once: `submit` opens a submission in the ledger (a token, the
planned refs) before the first create and labels every object with the token (TOKEN_LABEL) and annotates it
with the exact run name (RUN_ANNOTATION); `lookup` finds the workload by name and token after a launch was
killed between create and record. `--force` / `--resume` delete only objects of their own run: an object
whose annotation names another run, or that the ledger records for another run, is refused with one line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from soraplan.planner.errors import UserError

from . import k8s_checks
from .k8s_profiles import load_profile
from .k8s_render import RUN_LABEL, file_name, make_context, render_objects, to_yaml, to_yaml_documents
from .preflight import preflight_k8s

# Kind -> (group, version, plural) for the API calls; core kinds have group "".
RESOURCES: dict[str, tuple[str, str, str]] = {
    "JobSet": ("jobset.x-k8s.io", "v1alpha2", "jobsets"),
    "PyTorchJob": ("kubeflow.org", "v1", "pytorchjobs"),
    "TrainJob": ("trainer.kubeflow.org", "v1alpha1", "trainjobs"),
    "Job": ("batch", "v1", "jobs"),
    "ConfigMap": ("", "v1", "configmaps"),
    "Service": ("", "v1", "services"),
    "NetworkPolicy": ("networking.k8s.io", "v1", "networkpolicies"),
}
INSTALL_HINT = {"JobSet": "install JobSet (jobset.x-k8s.io) or use --kind indexed-job",
                "PyTorchJob": "install the Kubeflow training operator v1 or use --kind jobset",
                "TrainJob": "install Kubeflow Trainer v2 or use --kind jobset"}
WORKLOADS = ("JobSet", "PyTorchJob", "TrainJob", "Job")
TOKEN_LABEL = "soraplan.dev/submit-token"
RUN_ANNOTATION = "soraplan.dev/run-name"
DELETE_WAIT_S = 120.0
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


# ------------------------------------------------------------------------------------------------
# pure

def objects(spec: Any, plan: dict[str, Any], opts: Any) -> list[dict[str, Any]]:
    return render_objects(spec, opts, load_profile(opts.profile))


def render(spec: Any, plan: dict[str, Any], opts: Any) -> str:
    """Multi-document YAML of every object `submit` would create, in creation order."""
    return to_yaml_documents(objects(spec, plan, opts))


def ref(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def parse_ref(text: str) -> tuple[str, str, str]:
    kind, ns, name = text.split("/", 2)
    if kind not in RESOURCES:
        raise UserError(f"ledger: {text!r} is not a Kubernetes object this backend knows")
    return kind, ns, name


# ------------------------------------------------------------------------------------------------
# files

def write_dry_run(spec: Any, plan: dict[str, Any], opts: Any) -> list[Path]:
    """--dry-run --output-dir DIR: one YAML file per object (temp file + rename)."""
    out = Path(opts.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, obj in enumerate(objects(spec, plan, opts)):
        path = out / file_name(obj, i)
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(to_yaml(obj))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------
# the client seam

def _client() -> Any:
    """An ApiClient from $KUBECONFIG / ~/.kube/config, else the in-cluster service account."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise UserError("--cluster k8s needs the 'kubernetes' package (pip install 'soraplan[k8s]')") from None
    path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    first = path.split(os.pathsep)[0]
    if Path(first).is_file():
        try:
            return config.new_client_from_config(config_file=first)
        except Exception as e:  # noqa: BLE001 - kubeconfig errors come in many types
            raise UserError(f"kubeconfig {first}: {' '.join(str(e).split())}") from None
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        from kubernetes.config.incluster_config import InClusterConfigLoader

        cfg = client.Configuration()
        try:
            InClusterConfigLoader(token_filename=str(SERVICE_ACCOUNT_DIR / "token"),
                                  cert_filename=str(SERVICE_ACCOUNT_DIR / "ca.crt")).load_and_set(cfg)
        except Exception as e:  # noqa: BLE001 - ConfigException and file errors
            raise UserError(f"in-cluster config: {' '.join(str(e).split())}") from None
        return client.ApiClient(cfg)
    raise UserError(f"no Kubernetes credentials: no kubeconfig at {first} (set KUBECONFIG) and not inside a pod")


def preflight(spec: Any, opts: Any) -> None:
    """The backend's preflight (launch/preflight.py): namespace, CRD, GPU nodes; called by launch/launcher.py."""
    preflight_k8s(spec, opts, _client(), RESOURCES, INSTALL_HINT)


def _describe(kind: str, verb: str, ns: str, name: str) -> str:
    group, _, plural = RESOURCES[kind]
    res = f"{plural}.{group}" if group else plural
    return f"{verb} {res} in namespace {ns!r}" + (f" ({name})" if name else "")


def _status_body(e: Any) -> dict[str, Any]:
    try:
        return json.loads(e.body) if e.body else {}
    except (TypeError, ValueError):
        return {}


def api_error(e: Any, kind: str, verb: str, ns: str, name: str, run: str) -> UserError:
    """One line for an ApiException."""
    body = _status_body(e)
    msg = " ".join(str(body.get("message") or e.reason or "").split())
    code = int(getattr(e, "status", 0) or 0)
    if code == 409:
        return UserError(f"run {run!r} exists on the cluster ({kind} {ns}/{name}); use --resume/--force")
    if code == 403:
        group, _, plural = RESOURCES[kind]
        return UserError(f"forbidden: your credentials may not {_describe(kind, verb, ns, '')}; the missing RBAC "
                         f"permission is verb {verb!r} on resource {plural!r} in apiGroup {group!r}"
                         + (f" (server: {msg})" if msg else ""))
    if code == 422:
        causes = (body.get("details") or {}).get("causes") or []
        fields = "; ".join(f"{c.get('field', '?')}: {' '.join(str(c.get('message', '')).split())}" for c in causes)
        return UserError(f"the server rejected {kind} {ns}/{name}: {fields or msg or 'invalid'}")
    if code == 404 and kind in INSTALL_HINT and verb == "create":
        group, version, plural = RESOURCES[kind]
        return UserError(f"the cluster does not serve {plural}.{group}/{version}: {INSTALL_HINT[kind]}")
    if code == 404:
        return UserError(f"{kind} {ns}/{name} not found on the cluster")
    if code == 401:
        return UserError("unauthorized: the cluster refused the kubeconfig credentials")
    return UserError(f"Kubernetes API error {code or ''} on {_describe(kind, verb, ns, name)}: {msg or e}".strip())


def _call(fn: Callable[[], Any], kind: str, verb: str, ns: str, name: str, run: str) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return fn()
    except ApiException as e:
        raise api_error(e, kind, verb, ns, name, run) from None
    except Exception as e:  # noqa: BLE001 - urllib3 connection errors: one line, not a traceback
        if type(e).__name__ == "ValidationError" and type(e).__module__.startswith("pydantic"):
            first = " ".join(str(e).splitlines()[1:3])
            raise UserError(f"the kubernetes client refused {kind} {ns}/{name}: {first}") from None
        if type(e).__module__.startswith(("urllib3", "socket", "ssl")) or isinstance(e, OSError):
            raise UserError(f"cannot reach the Kubernetes API ({type(e).__name__}): {' '.join(str(e).split())[:300]}") from None
        raise


class Cluster:
    """Create/read/delete by kind, over one ApiClient."""

    def __init__(self, api_client: Any):
        from kubernetes import client

        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)

    def create(self, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        kind, ns = obj["kind"], obj["metadata"]["namespace"]
        # The generated client names its model classes (V1ConfigMap, ...) as the body type; it serialises a
        # plain manifest dict the same way, and the answer is a model object or (custom objects) a dict.
        body: Any = obj
        kw: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        r: Any
        if kind == "ConfigMap":
            r = self.core.create_namespaced_config_map(ns, body, **kw)
        elif kind == "Service":
            r = self.core.create_namespaced_service(ns, body, **kw)
        elif kind == "Job":
            r = self.batch.create_namespaced_job(ns, body, **kw)
        elif kind == "NetworkPolicy":
            r = self.networking.create_namespaced_network_policy(ns, body, **kw)
        else:
            group, version, plural = RESOURCES[kind]
            r = self.custom.create_namespaced_custom_object(group, version, ns, plural, body, **kw)
        return r if isinstance(r, dict) else self.api_client.sanitize_for_serialization(r)

    def read(self, kind: str, ns: str, name: str) -> dict[str, Any]:
        r: Any  # a model object, or a dict for custom objects
        if kind == "ConfigMap":
            r = self.core.read_namespaced_config_map(name, ns)
        elif kind == "Service":
            r = self.core.read_namespaced_service(name, ns)
        elif kind == "Job":
            r = self.batch.read_namespaced_job(name, ns)
        elif kind == "NetworkPolicy":
            r = self.networking.read_namespaced_network_policy(name, ns)
        else:
            group, version, plural = RESOURCES[kind]
            r = self.custom.get_namespaced_custom_object(group, version, ns, plural, name)
        return r if isinstance(r, dict) else self.api_client.sanitize_for_serialization(r)

    def delete(self, kind: str, ns: str, name: str) -> None:
        from kubernetes import client

        body = client.V1DeleteOptions(propagation_policy="Foreground")
        if kind == "ConfigMap":
            self.core.delete_namespaced_config_map(name, ns, body=body)
        elif kind == "Service":
            self.core.delete_namespaced_service(name, ns, body=body)
        elif kind == "Job":
            self.batch.delete_namespaced_job(name, ns, body=body)
        elif kind == "NetworkPolicy":
            self.networking.delete_namespaced_network_policy(name, ns, body=body)
        else:
            group, version, plural = RESOURCES[kind]
            self.custom.delete_namespaced_custom_object(group, version, ns, plural, name, body=body)

    def pods(self, ns: str, run_label: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(ns, label_selector=f"{RUN_LABEL}={run_label}").items)


def _exists(cluster: Cluster, kind: str, ns: str, name: str, run: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return cluster.read(kind, ns, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise api_error(e, kind, "get", ns, name, run) from None


def _delete_and_wait(cluster: Cluster, kind: str, ns: str, name: str, run: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.delete(kind, ns, name)
    except ApiException as e:
        if e.status == 404:
            return
        raise api_error(e, kind, "delete", ns, name, run) from None
    deadline = time.monotonic() + DELETE_WAIT_S
    while _exists(cluster, kind, ns, name, run) is not None:   # foreground deletion: dependents go first
        if time.monotonic() > deadline:
            raise UserError(f"{kind} {ns}/{name} is still being deleted after {DELETE_WAIT_S:.0f} s; try again later")
        time.sleep(1.0)


def submit(spec: Any, plan: dict[str, Any], opts: Any, ledger: Any, record: Any) -> None:
    """Create the objects (ConfigMap, Service, workload). With --server-dry-run nothing is stored anywhere.

    An existing workload: 409 -> one line, unless --force (delete, wait, recreate) or --resume (recreate
    a failed/finished-unsuccessfully run; an active run is left alone; training resumes from the PVC).
    """
    objs = objects(spec, plan, opts)
    cluster = Cluster(_client())
    run = opts.name
    ctx = make_context(spec, opts, load_profile(opts.profile))
    wl = objs[-1]["metadata"]
    try:
        _call(lambda: k8s_checks.before_create(cluster, objs, ctx.pvc, ctx.layout.nodes), objs[-1]["kind"], "create",
              wl["namespace"], wl["name"], run)
    except UserError as e:
        if ledger is not None and record is not None:
            ledger.set_state(record.name, "failed", f"refused before submission: {e}")
        raise
    if opts.server_dry_run:
        for obj in objs:
            kind, ns, name = obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]
            _call(lambda: cluster.create(obj, dry_run=True), kind, "create", ns, name, run)
            print(f"server dry run: {kind} {ns}/{name} accepted (dryRun=All, nothing created)")
        return
    workload = objs[-1]
    wk, wns, wname = workload["kind"], workload["metadata"]["namespace"], workload["metadata"]["name"]
    if ledger is not None:
        _check_not_another_runs(ledger, objs, run)
    if opts.resume or opts.force:
        for obj in objs:
            _check_owner(cluster, obj, run)
        live = _exists(cluster, wk, wns, wname, run)
        if live is not None and opts.resume and not opts.force:
            state = workload_state(wk, live)["state"]
            if state in ("running", "queued", "submitted", "restarting"):
                raise UserError(f"run {run!r} is still {state} on the cluster ({wk} {wns}/{wname}); nothing to resume "
                                "(soraplan cancel it first, or use --force)")
            if state == "completed":
                raise UserError(f"run {run!r} has completed on the cluster; a finished run is never restarted (use --force)")
        for obj in reversed(objs):
            _delete_and_wait(cluster, obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"], run)
    if ledger is not None and record is not None:
        token = ledger.begin_submit(record.name, [ref(o) for o in objs])
        for obj in objs:
            meta = obj["metadata"]
            meta["labels"] = {**(meta.get("labels") or {}), TOKEN_LABEL: token}
            meta["annotations"] = {**(meta.get("annotations") or {}), RUN_ANNOTATION: run}
    created: list[dict[str, Any]] = []
    try:
        for obj in objs:
            kind, ns, name = obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]
            _call(lambda: cluster.create(obj), kind, "create", ns, name, run)
            created.append(obj)
    except UserError:
        if created and created[-1] is not workload:   # workload refused: remove what we made for it
            for obj in reversed(created):
                try:
                    cluster.delete(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
                except Exception:  # noqa: BLE001 - best effort; the original error matters
                    pass
        if ledger is not None and record is not None:
            ledger.set_state(record.name, "failed", "submit refused by the cluster")
        raise
    if ledger is not None and record is not None:
        ledger.record_jobs(record.name, [ref(obj) for obj in created])


def _check_not_another_runs(ledger: Any, objs: list[dict[str, Any]], run: str) -> None:
    """Refuse when the ledger records one of these object refs for another run (the run -> object mapping)."""
    for obj in objs:
        others = [r for r in ledger.runs_holding(ref(obj)) if r != run]
        if others:
            raise UserError(f"run {run!r}: {ref(obj)} belongs to run {others[0]!r} in the ledger; not touching it "
                            "(choose another --name)")


def _check_owner(cluster: Cluster, obj: dict[str, Any], run: str) -> None:
    """Refuse to delete a live object whose run-name annotation names another run."""
    kind, ns, name = obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]
    live = _exists(cluster, kind, ns, name, run)
    owner = (((live or {}).get("metadata") or {}).get("annotations") or {}).get(RUN_ANNOTATION)
    if owner is not None and owner != run:
        raise UserError(f"run {run!r}: {kind} {ns}/{name} on the cluster belongs to run {owner!r}; not deleting it "
                        "(choose another --name)")


def lookup(record: Any) -> list[str]:
    """The refs of the open submission's objects when its workload exists with the submission's token.

    Args:
        record: the run's RunRecord with an open `submission` (its `planned` refs, workload last).

    Returns:
        The planned refs that exist with the token (workload included), or [] when the workload does not
        carry the token (nothing usable was created; objects made before the workload are recreated or
        refused by the next submit).

    Raises:
        UserError: the cluster cannot be asked.
    """
    sub = record.submission
    if sub is None or not sub.planned:
        return []
    cluster = Cluster(_client())
    found = []
    for text in sub.planned:
        kind, ns, name = parse_ref(text)
        live = _exists(cluster, kind, ns, name, record.name)
        labels = (((live or {}).get("metadata") or {}).get("labels") or {})
        if live is not None and labels.get(TOKEN_LABEL) == sub.token:
            found.append(text)
    return found if sub.planned[-1] in found else []


# ------------------------------------------------------------------------------------------------
# status / logs / cancel

def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    conds = ((obj.get("status") or {}).get("conditions")) or []
    return {c.get("type"): c for c in conds if str(c.get("status")) == "True"}


def workload_state(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """{"state", "detail"} from the object's conditions (JobSet, PyTorchJob, TrainJob, Job)."""
    conds = _conditions(obj)
    st = obj.get("status") or {}

    def detail(c: dict[str, Any]) -> str:
        return " ".join(f"{c.get('reason', '')}: {c.get('message', '')}".strip(": ").split())

    for t, state in (("Failed", "failed"), ("Completed", "completed"), ("Complete", "completed"),
                     ("Succeeded", "completed"), ("Suspended", "queued"), ("Restarting", "restarting"),
                     ("Running", "running")):
        if t in conds:
            out = {"state": state, "detail": detail(conds[t])}
            if kind == "JobSet" and st.get("restarts"):
                out["detail"] = (out["detail"] + f" (group restarts: {st['restarts']})").strip()
            return out
    if kind == "Job" and (st.get("active") or 0) > 0:
        return {"state": "running", "detail": f"{st['active']} pods active"}
    if kind == "JobSet" and any((r.get("active") or 0) > 0 for r in st.get("replicatedJobsStatus") or []):
        return {"state": "running", "detail": f"group restarts: {st.get('restarts', 0)}"}
    if kind == "TrainJob" and any((j.get("active") or 0) > 0 for j in st.get("jobsStatus") or []):
        # Trainer's conditions are Created / Suspended / Complete / Failed: a running TrainJob has active jobs
        ready = sum(int(j.get("ready") or 0) for j in st["jobsStatus"])
        return {"state": "running", "detail": f"{ready} of {len(st['jobsStatus'])} jobs ready"}
    spec = obj.get("spec") or {}
    if spec.get("suspend") or (spec.get("runPolicy") or {}).get("suspend"):
        return {"state": "queued", "detail": "suspended (waiting for Kueue admission)"}
    return {"state": "submitted", "detail": "no conditions yet"}


def _workload_ref(record: Any) -> tuple[str, str, str]:
    refs = [parse_ref(j) for j in record.job_ids]
    for r in reversed(refs):
        if r[0] in WORKLOADS:
            return r
    raise UserError(f"run {record.name!r} has no Kubernetes workload in the ledger (was it submitted?)")


def status(record: Any) -> dict[str, Any]:
    """Live state from the workload's conditions; the ledger's state (+ why) when the cluster cannot answer."""
    if not record.job_ids:
        return {"state": record.state, "detail": "not submitted"}
    kind, ns, name = _workload_ref(record)
    try:
        cluster = Cluster(_client())
        obj = _exists(cluster, kind, ns, name, record.name)
    except UserError as e:  # `soraplan status` lists every run: one unreachable cluster must not hide the rest
        return {"state": record.state, "detail": f"(not live: {e})"}
    if obj is None:
        return {"state": "deleted" if record.state != "cancelled" else "cancelled",
                "detail": f"{kind} {ns}/{name} is gone from the cluster"}
    return workload_state(kind, obj)


def pod_node_rank(pod: Any) -> int | None:
    """The node rank a pod runs: its completion index (JobSet, TrainJob, Indexed Job) or its PyTorchJob
    replica (master 0, worker i -> i + 1); None when neither says."""
    ann = pod.metadata.annotations or {}
    idx = ann.get("batch.kubernetes.io/job-completion-index")
    if idx is not None and str(idx).isdigit():
        return int(idx)
    name = pod.metadata.name
    if "-master-" in name:
        return 0
    head, sep, tail = name.rpartition("-worker-")
    return int(tail) + 1 if sep and tail.isdigit() else None


def pods_by_rank(pods: list[Any]) -> dict[int, Any]:
    """One pod per node rank: the newest (a restarted group leaves its failed pods behind until cleanup)."""
    out: dict[int, Any] = {}
    for pod in sorted(pods, key=lambda p: (str(p.metadata.creation_timestamp or ""), p.metadata.name)):
        rank = pod_node_rank(pod)
        if rank is not None:
            out[rank] = pod
    return dict(sorted(out.items()))


def _print_log(cluster: Cluster, ns: str, pod: str, follow: bool) -> None:
    if follow:
        # _preload_content=False: the raw urllib3 response (typed by the client as the str it would read)
        resp: Any = cluster.core.read_namespaced_pod_log(pod, ns, follow=True, _preload_content=False)
        for chunk in resp.stream(4096):
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
    else:
        text = cluster.core.read_namespaced_pod_log(pod, ns)
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def logs(record: Any, follow: bool, rank: int | None = None, all_pods: bool = False) -> None:
    """The log of one node's pod (node rank 0 by default: it runs the rank-0 trainer), or of every pod.

    Args:
        record: the run's ledger record.
        follow: keep streaming (one pod only).
        rank: the node rank whose pod to print (c10d numbers global ranks by the pods' sorted host names:
            global rank 0 runs in node rank 0's pod).
        all_pods: every node's pod in rank order, each after a `==> pod (node rank i) <==` line.
    """
    if all_pods and follow:
        raise UserError("logs: --all prints every pod once; --follow streams one pod (use --rank N -f)")
    kind, ns, name = _workload_ref(record)
    cluster = Cluster(_client())
    from kubernetes.client.exceptions import ApiException

    try:
        pods = pods_by_rank(cluster.pods(ns, name))
    except ApiException as e:
        raise UserError(_pod_error(e, ns)) from None
    if not pods:
        raise UserError(f"run {record.name!r}: no pods yet for {kind} {ns}/{name} (state: {status(record)['state']})")
    want = 0 if rank is None else rank
    if not all_pods and want not in pods:
        raise UserError(f"logs --rank {want}: run {record.name!r} has pods for node ranks "
                        f"{', '.join(map(str, pods))}")
    try:
        if all_pods:
            for r, pod in pods.items():
                sys.stdout.write(f"==> {pod.metadata.name} (node rank {r}) <==\n")
                _print_log(cluster, ns, pod.metadata.name, False)
        else:
            _print_log(cluster, ns, pods[want].metadata.name, follow)
    except ApiException as e:
        raise UserError(_pod_error(e, ns)) from None


def _pod_error(e: Any, ns: str) -> str:
    if e.status == 403:
        return (f"forbidden: your credentials may not read pods/log in namespace {ns!r}; the missing RBAC permission is "
                "verb 'get' on resource 'pods/log' (and 'list' on 'pods') in apiGroup ''")
    body = _status_body(e)
    return f"cannot read pod logs ({e.status}): {' '.join(str(body.get('message') or e.reason).split())}"


def cancel(record: Any) -> None:
    """Delete every object of the run (foreground propagation: pods go before their owner)."""
    from kubernetes.client.exceptions import ApiException

    cluster = Cluster(_client())
    for text in reversed(record.job_ids):
        kind, ns, name = parse_ref(text)
        try:
            cluster.delete(kind, ns, name)
        except ApiException as e:
            if e.status != 404:
                raise api_error(e, kind, "delete", ns, name, record.name) from None
