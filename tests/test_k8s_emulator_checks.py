"""Client-path checks of the hardened k8s launch against kmock's emulator: the checkpoint claim's access
mode, the TrainJob CRD's runtimePatches, TrainJob status, the NetworkPolicy through its API, per-rank logs
and secrets that never reach the ledger.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from test_k8s_emulator import RUN, add_pvc, cli, emu, launch, one_line_error, requests, res, stored  # noqa: F401

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[1]


def _kmock():
    import kmock

    return kmock


# ---------------------------------------------------------------------------------------------- the claim

def test_rwo_claim_refused_for_multi_node_nothing_created(emu):
    add_pvc(emu, modes=("ReadWriteOnce",))
    line = one_line_error(*launch("--pvc", "ckpt"))
    assert "--pvc ckpt: access modes ReadWriteOnce: a 2-node run needs ReadWriteMany" in line
    assert [k[0] for k in stored(emu)] == ["PersistentVolumeClaim"]   # nothing created
    row = json.loads(cli("status", "--json")[1])[0]
    assert row["state"] == "failed" and row["job_ids"] == []
    add_pvc(emu, modes=("ReadWriteMany",))   # fixed: the same run goes with --resume
    code, out = launch("--pvc", "ckpt", "--resume")
    assert code == 0, out


def test_rwo_claim_fine_for_one_node_and_rwx_for_many(emu):
    add_pvc(emu, name="one", modes=("ReadWriteOnce",), bound=False)
    code, out = cli("launch", "--cluster", "k8s", "--image", "img:1", "--gpus", "8", "--tp", "2", "--name", "solo",
                    "--pvc", "one")
    assert code == 0, out
    add_pvc(emu, name="shared", modes=("ReadWriteMany",))
    code, out = launch("--pvc", "shared")
    assert code == 0, out
    js = stored(emu)[("JobSet", "default", RUN)]
    vols = js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "shared"}} in vols


def test_missing_claim_and_unreadable_claim(emu):
    line = one_line_error(*launch("--pvc", "nope"))
    assert "--pvc nope: no PersistentVolumeClaim 'nope' in namespace 'default'" in line
    kmock = _kmock()
    emu.on_loop(lambda km: km["get", kmock.resource("", "v1", "persistentvolumeclaims")] << kmock.KubernetesError(
        status=403, reason="Forbidden", message="cannot get persistentvolumeclaims"))
    code, out = launch("--pvc", "hidden", name="hidden-claim")
    assert code == 0, out
    assert "warning: --pvc hidden: cannot read the claim (403); its access mode is unchecked" in out


# ---------------------------------------------------------------------------------------------- TrainJob

def _crd(emu, runtime_patches: bool):
    kmock = _kmock()
    crd = yaml.safe_load((ROOT / ".." / "shared" / "k8s-crds" / "trainer.kubeflow.org_trainjobs.yaml").read_text())
    if not runtime_patches:  # an older Trainer: the same CRD with podSpecOverrides instead
        props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        props["podSpecOverrides"] = props.pop("runtimePatches")
    emu.on_loop(lambda km: km.objects.__setitem__(
        (kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions"), None, crd["metadata"]["name"]), crd))


def test_trainjob_refused_when_the_crd_lacks_runtime_patches(emu):
    _crd(emu, runtime_patches=False)
    line = one_line_error(*launch(kind="trainjob"))
    assert "--kind trainjob: the cluster's TrainJob CRD has no spec.runtimePatches" in line and "--kind jobset" in line
    assert ("TrainJob", "default", RUN) not in stored(emu)


def test_trainjob_created_when_the_crd_serves_runtime_patches(emu):
    _crd(emu, runtime_patches=True)
    code, out = launch(kind="trainjob")
    assert code == 0, out
    assert "runtimePatches" in stored(emu)[("TrainJob", "default", RUN)]["spec"]
    assert not [p for m, p, params, _ in requests(emu) if m == "POST" and params.get("dryRun")]   # no probe needed


def test_trainjob_probe_when_the_crd_is_unreadable(emu):
    """No permission on CRDs: a dryRun=All create shows what the server keeps; a pruned runtimePatches refuses."""
    kmock = _kmock()
    emu.on_loop(lambda km: km["get", kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")]
                << kmock.KubernetesError(status=403, reason="Forbidden", message="no"))
    code, out = launch(kind="trainjob", name="served")   # the server keeps the field: created
    assert code == 0, out
    probes = [p for m, p, params, _ in requests(emu) if m == "POST" and params.get("dryRun") == "All"]
    assert probes == ["/apis/trainer.kubeflow.org/v1alpha1/namespaces/default/trainjobs"]

    def old_trainer(body):   # what an old Trainer's API server answers: the object without the unknown field
        if body.get("kind") != "TrainJob":
            return body
        return {**body, "spec": {k: v for k, v in body["spec"].items() if k != "runtimePatches"}}

    emu.on_loop(lambda km: setattr(km, "prune", old_trainer))
    line = one_line_error(*launch(kind="trainjob"))
    assert "has no spec.runtimePatches" in line
    assert ("TrainJob", "default", RUN) not in stored(emu)


def test_trainjob_status_running_completed_failed(emu):
    assert launch(kind="trainjob")[0] == 0

    def set_status(st):
        emu.on_loop(lambda km: km.objects[res("trainjob"), "default", RUN].patch({"status": st}))

    def state():
        return json.loads(cli("status", RUN, "--json")[1])[0]

    set_status({"conditions": [{"type": "Created", "status": "True", "reason": "JobsCreationSucceeded"}]})
    assert state()["state"] == "submitted"
    set_status({"jobsStatus": [{"name": "node", "active": 2, "ready": 2, "succeeded": 0, "failed": 0, "suspended": 0}]})
    assert state()["state"] == "running"
    set_status({"conditions": [{"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "done"}],
                "jobsStatus": [{"name": "node", "active": 0, "ready": 0, "succeeded": 1, "failed": 0, "suspended": 0}]})
    assert state()["state"] == "completed"
    set_status({"conditions": [{"type": "Failed", "status": "True", "reason": "JobsFailed", "message": "x"}]})
    assert state()["state"] == "failed"


# ---------------------------------------------------------------------------------------------- objects

def test_network_policy_created_through_its_api_and_deleted_on_cancel(emu):
    assert launch()[0] == 0
    posts = [p for m, p, params, _ in requests(emu) if m == "POST"]
    assert "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies" in posts
    np = stored(emu)[("NetworkPolicy", "default", RUN)]
    assert np["spec"]["podSelector"] == {"matchLabels": {"soraplan.dev/run": RUN}}
    assert cli("cancel", RUN)[0] == 0
    assert ("NetworkPolicy", "default", RUN) not in stored(emu)


def test_secrets_are_references_and_never_in_the_ledger(emu, tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text(yaml.safe_dump({"secret_env": {"HF_TOKEN": {"secret": "hf-cred", "key": "tok3n"}},
                                    "env_from_secrets": ["wandb-cred"]}))
    assert launch("--profile", str(prof))[0] == 0
    c = stored(emu)[("JobSet", "default", RUN)]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
        "containers"][0]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-cred", "key": "tok3n"}}} in c["env"]
    assert c["envFrom"] == [{"secretRef": {"name": "wandb-cred"}}]
    state = Path(os.environ["SORAPLAN_STATE_DIR"])
    blob = b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())
    assert blob and b"hf-cred" not in blob and b"tok3n" not in blob and b"wandb-cred" not in blob


# ---------------------------------------------------------------------------------------------- logs

def _pods(emu, names_ranks, kind="jobset"):
    kmock = _kmock()
    pods = kmock.resource("", "v1", "pods")

    def add(km):
        for name, rank, ts in names_ranks:
            meta = {"name": name, "namespace": "default", "labels": {"soraplan.dev/run": RUN},
                    "creationTimestamp": ts}
            if rank is not None:
                meta["annotations"] = {"batch.kubernetes.io/job-completion-index": str(rank)}
            km.objects[pods, "default", name] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta}
            km["get", pods, kmock.name(name), kmock.subresource("log")] << kmock.headers(
                {"Content-Type": "text/plain"}) << f"log of {name}\n".encode()
    emu.on_loop(add)


def test_logs_rank_and_all(emu):
    assert launch()[0] == 0
    _pods(emu, [(f"{RUN}-node-0-1-old", 1, "2026-01-01T00:00:00Z"), (f"{RUN}-node-0-1", 1, "2026-01-01T01:00:00Z"),
                (f"{RUN}-node-0-0", 0, "2026-01-01T01:00:00Z")])
    assert cli("logs", RUN) == (0, f"log of {RUN}-node-0-0\n")
    assert cli("logs", RUN, "--rank", "1") == (0, f"log of {RUN}-node-0-1\n")   # the newest pod of rank 1
    code, out = cli("logs", RUN, "--all")
    assert code == 0 and out == (f"==> {RUN}-node-0-0 (node rank 0) <==\nlog of {RUN}-node-0-0\n"
                                 f"==> {RUN}-node-0-1 (node rank 1) <==\nlog of {RUN}-node-0-1\n")
    line = one_line_error(*cli("logs", RUN, "--rank", "5"))
    assert "logs --rank 5" in line and "node ranks 0, 1" in line
    one_line_error(*cli("logs", RUN, "--all", "--follow"))


def test_logs_rank_of_pytorchjob_pods(emu):
    assert launch(kind="pytorchjob")[0] == 0
    _pods(emu, [(f"{RUN}-worker-0", None, "2026-01-01T00:00:00Z"), (f"{RUN}-master-0", None, "2026-01-01T00:00:00Z")])
    assert cli("logs", RUN, "--rank", "1") == (0, f"log of {RUN}-worker-0\n")
    assert cli("logs", RUN) == (0, f"log of {RUN}-master-0\n")
