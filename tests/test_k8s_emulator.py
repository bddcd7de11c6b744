"""The client path of `soraplan launch --cluster k8s` / status / logs / cancel against kmock's KubernetesEmulator.

The emulator is an in-memory HTTP server that speaks the Kubernetes API (not a cluster: no controllers,
no pods are started, no validation). It runs on 127.0.0.1 in a background thread (tests/k8s_emulator.py);
the official `kubernetes` client reaches it through a kubeconfig written per test. Error paths are injected
as emulator reactions returning Kubernetes Status objects (403, 404, 409, 422).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import k8s_schemas
from k8s_emulator import EmulatorThread
from soraplan.cli import app

pytestmark = pytest.mark.k8s

RUN = "emu-run"
KIND_RES = {"jobset": ("jobset.x-k8s.io", "v1alpha2", "jobsets", "JobSet"),
            "pytorchjob": ("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"),
            "trainjob": ("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"),
            "indexed-job": ("batch", "v1", "jobs", "Job")}


@pytest.fixture()
def emu(tmp_path, monkeypatch):
    em = EmulatorThread().start()
    monkeypatch.setenv("KUBECONFIG", str(em.kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.setenv("SORAPLAN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield em
    em.stop()


def res(kind):
    import kmock

    group, version, plural, _ = KIND_RES[kind]
    return kmock.resource(group, version, plural)


def cli(*args):
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def launch(*extra, kind="jobset", name=RUN):
    storage = () if "--pvc" in extra else ("--ephemeral",)   # 2 nodes: a claim, or say there is none
    return cli("launch", "--cluster", "k8s", "--image", "registry.example/train:1", "--gpus", "16", "--tp", "2",
               "--kind", kind, "--name", name, *storage, *extra)


def add_pvc(em, name="ckpt", modes=("ReadWriteMany",), bound=True):
    """A PersistentVolumeClaim in the emulator (bound: the volume's modes in status, as a real server shows)."""
    import kmock

    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
           "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": "10Ti"}}}}
    if bound:
        pvc["status"] = {"phase": "Bound", "accessModes": list(modes)}
    em.on_loop(lambda km: km.objects.__setitem__((kmock.resource("", "v1", "persistentvolumeclaims"), "default", name),
                                                 pvc))


def stored(em):
    """{(Kind, ns, name): object} of live objects in the emulator."""
    def read(km):
        out = {}
        for (r, ns, name), obj in km.objects.items():
            if not obj.deleted:
                out[(obj.raw.get("kind"), ns, name)] = obj.raw
        return out
    return em.on_loop(read)


def requests(em):
    return em.on_loop(lambda km: [(str(r.method.value if hasattr(r.method, "value") else r.method), r.url.path,
                                   dict(r.params or {}), r.data) for r in list(km)])


def one_line_error(code, out):
    assert code == 2, out
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out, out
    return lines[0]


# ---------------------------------------------------------------------------------------------- happy path

@pytest.mark.parametrize("kind", list(KIND_RES))
def test_create_each_kind_through_the_right_api(emu, kind):
    code, out = launch(kind=kind)
    assert code == 0, out
    group, version, plural, wkind = KIND_RES[kind]
    objs = stored(emu)
    assert (wkind, "default", RUN) in objs and ("ConfigMap", "default", f"{RUN}-spec") in objs
    k8s_schemas.assert_valid(list(objs.values()))
    posts = [path for m, path, params, _ in requests(emu) if m == "POST" and not params.get("dryRun")]
    prefix = f"/api/{version}" if group == "" else f"/apis/{group}/{version}"
    assert posts[0] == "/api/v1/namespaces/default/configmaps"
    assert posts[-1] == f"{prefix}/namespaces/default/{plural}"
    if kind == "indexed-job":
        assert ("Service", "default", RUN) in objs
    code, out = cli("status", RUN, "--json")
    assert code == 0, out
    assert json.loads(out)[0]["state"] == "submitted"


def test_status_follows_conditions_then_logs_then_cancel(emu):
    import kmock

    assert launch()[0] == 0

    def set_status(conds, **extra):
        emu.on_loop(lambda km: km.objects[res("jobset"), "default", RUN].patch({"status": {"conditions": conds, **extra}}))

    set_status([], replicatedJobsStatus=[{"name": "node", "active": 1, "ready": 1, "succeeded": 0, "failed": 0,
                                          "suspended": 0}], restarts=1)
    assert json.loads(cli("status", RUN, "--json")[1])[0]["state"] == "running"
    set_status([{"type": "Completed", "status": "True", "reason": "AllJobsCompleted", "message": "jobset completed"}])
    row = json.loads(cli("status", RUN, "--json")[1])[0]
    assert row["state"] == "completed" and "AllJobsCompleted" in row["detail"]
    set_status([{"type": "Failed", "status": "True", "reason": "FailedJobs", "message": "reached max restarts"}])
    assert json.loads(cli("status", RUN, "--json")[1])[0]["state"] == "failed"

    pods = kmock.resource("", "v1", "pods")

    def add_pods(km):
        for i in (1, 0):
            km.objects[pods, "default", f"{RUN}-node-0-{i}"] = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{RUN}-node-0-{i}", "namespace": "default", "labels": {"soraplan.dev/run": RUN},
                             "annotations": {"batch.kubernetes.io/job-completion-index": str(i)}}}
        km["get", pods, kmock.name(f"{RUN}-node-0-0"), kmock.subresource("log")] << kmock.headers(
            {"Content-Type": "text/plain"}) << b'{"step": 1, "loss": 2.5}\n'
        km["get", pods, kmock.name(f"{RUN}-node-0-1"), kmock.subresource("log")] << kmock.headers(
            {"Content-Type": "text/plain"}) << b"rank 8 chatter\n"
    emu.on_loop(add_pods)
    code, out = cli("logs", RUN)
    assert code == 0 and out == '{"step": 1, "loss": 2.5}\n', out
    code, out = cli("logs", RUN, "--follow")
    assert code == 0 and '"loss": 2.5' in out, out

    code, out = cli("cancel", RUN)
    assert code == 0, out
    # the run's objects are gone (the hand-made pods stay: the emulator has no garbage collector)
    assert {k for k in stored(emu) if k[0] != "Pod"} == set()
    deletes = [(p, d) for m, p, _, d in requests(emu) if m == "DELETE"]
    assert {p.rsplit("/", 1)[1] for p, _ in deletes} >= {RUN, f"{RUN}-spec"}
    assert all(d and d.get("propagationPolicy") == "Foreground" for _, d in deletes)
    assert json.loads(cli("status", RUN, "--json")[1])[0]["state"] == "cancelled"


def test_server_dry_run_sends_dryrun_all_and_stores_nothing(emu):
    code, out = launch("--server-dry-run", kind="indexed-job")
    assert code == 0, out
    assert "dryRun=All" in out and out.count("accepted") == 4   # ConfigMap, Service, NetworkPolicy, Job
    posts = [(p, params) for m, p, params, _ in requests(emu) if m == "POST"]
    assert len(posts) == 4 and all(params.get("dryRun") == "All" for _, params in posts)
    assert stored(emu) == {}
    assert cli("status", "--json")[1].strip() == "[]"  # nothing in the ledger either


# ---------------------------------------------------------------------------------------------- error paths

def test_409_already_exists(emu):
    emu.on_loop(lambda km: km.objects.__setitem__((res("jobset"), "default", RUN), {
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": RUN, "namespace": "default"}}))
    emu.on_loop(lambda km: km.objects.__setitem__((__import__("kmock").resource("", "v1", "configmaps"), "default",
                                                   f"{RUN}-spec"), {"apiVersion": "v1", "kind": "ConfigMap",
                                                                    "metadata": {"name": f"{RUN}-spec", "namespace": "default"}}))
    line = one_line_error(*launch())
    assert f"run {RUN!r} exists on the cluster" in line and "use --resume/--force" in line
    code, out = launch("--force")
    assert code == 0, out
    js = stored(emu)[("JobSet", "default", RUN)]
    assert js["spec"]["replicatedJobs"][0]["template"]["spec"]["parallelism"] == 2


def test_resume_leaves_active_run_alone_and_recreates_failed_one(emu):
    add_pvc(emu)
    assert launch("--pvc", "ckpt")[0] == 0
    emu.on_loop(lambda km: km.objects[res("jobset"), "default", RUN].patch(
        {"status": {"replicatedJobsStatus": [{"name": "node", "active": 1}]}}))
    line = one_line_error(*launch("--resume", "--pvc", "ckpt"))
    assert "still running" in line
    emu.on_loop(lambda km: km.objects[res("jobset"), "default", RUN].patch(
        {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedJobs"}]}}))
    code, out = launch("--resume", "--pvc", "ckpt")
    assert code == 0, out
    js = stored(emu)[("JobSet", "default", RUN)]
    assert "status" not in js and "--resume auto" in js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"][
        "spec"]["containers"][0]["command"][2]


def test_403_names_the_missing_permission(emu):
    import kmock

    emu.on_loop(lambda km: km["post", res("jobset")] << kmock.KubernetesError(
        status=403, reason="Forbidden",
        message='jobsets.jobset.x-k8s.io is forbidden: User "alice" cannot create resource "jobsets" in API group '
                '"jobset.x-k8s.io" in the namespace "default"'))
    line = one_line_error(*launch())
    assert "verb 'create' on resource 'jobsets' in apiGroup 'jobset.x-k8s.io'" in line
    assert "namespace 'default'" in line and 'User "alice"' in line
    assert ("ConfigMap", "default", f"{RUN}-spec") not in stored(emu)  # the half-made run is cleaned up


def test_422_shows_the_servers_field_message(emu):
    import kmock

    emu.on_loop(lambda km: km["post", res("pytorchjob")] << kmock.KubernetesError(
        status=422, reason="Invalid", message=f'PyTorchJob.kubeflow.org "{RUN}" is invalid: spec.pytorchReplicaSpecs...',
        details={"name": RUN, "kind": "PyTorchJob", "causes": [
            {"reason": "FieldValueInvalid", "field": "spec.pytorchReplicaSpecs[Worker].replicas",
             "message": "Invalid value: -1: must be greater than or equal to 0"}]}))
    line = one_line_error(*launch(kind="pytorchjob"))
    assert f"the server rejected PyTorchJob default/{RUN}" in line
    assert "spec.pytorchReplicaSpecs[Worker].replicas: Invalid value: -1: must be greater than or equal to 0" in line


def test_404_crd_not_installed(emu):
    import kmock

    emu.on_loop(lambda km: km["post", res("trainjob")] << kmock.KubernetesError(
        status=404, reason="NotFound", message="the server could not find the requested resource"))
    line = one_line_error(*launch(kind="trainjob"))
    assert "does not serve trainjobs.trainer.kubeflow.org/v1alpha1" in line and "Kubeflow Trainer" in line


def test_unreachable_api_server_is_one_line(tmp_path, monkeypatch):
    kc = tmp_path / "kc"
    em = EmulatorThread()
    em.url = "http://127.0.0.1:9"  # discard port: nothing listens
    em.kubeconfig(kc)
    monkeypatch.setenv("KUBECONFIG", str(kc))
    monkeypatch.setenv("SORAPLAN_STATE_DIR", str(tmp_path / "state"))
    line = one_line_error(*launch())
    assert "cannot reach the Kubernetes API" in line


def test_no_credentials_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    monkeypatch.setenv("SORAPLAN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    line = one_line_error(*launch())
    assert "no Kubernetes credentials" in line


def test_in_cluster_service_account(tmp_path, monkeypatch):
    """Inside a pod (no kubeconfig): the service account token and CA, the API at KUBERNETES_SERVICE_HOST."""
    from soraplan.launch import k8s

    (tmp_path / "token").write_text("sa-token-123")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setattr(k8s, "SERVICE_ACCOUNT_DIR", tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api = k8s._client()
    cfg = api.configuration
    assert cfg.host == "https://10.96.0.1:443" and cfg.ssl_ca_cert == str(tmp_path / "ca.crt")
    assert cfg.api_key["BearerToken"].lower() == "bearer sa-token-123"
    (tmp_path / "token").unlink()
    with pytest.raises(Exception, match="in-cluster config"):
        k8s._client()
