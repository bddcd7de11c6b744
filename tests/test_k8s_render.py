"""k8s renderers: golden YAML per kind, schema validity (CRDs + kubernetes-validate --strict), names, command.

Regenerate the golden files after an intended change: SORAPLAN_UPDATE_GOLDEN=1 pytest tests/test_k8s_render.py
"""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import k8s_schemas
from soraplan.cli import app
from soraplan.launch.k8s_names import DNS_LABEL_MAX, object_name, pod_hostnames, sanitize_label
from soraplan.launch.k8s_profiles import Profile, load_profile
from soraplan.launch.k8s_render import command_script, render_objects, to_yaml_documents
from soraplan.launch.options import LaunchOptions
from soraplan.planner.config import build_spec
from soraplan.planner.errors import UserError

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
KINDS = ("jobset", "pytorchjob", "trainjob", "indexed-job")
PROFILE = ROOT / "templates" / "k8s-profile-example.yaml"


def _spec(**flags):
    return build_spec(flags={"gpus": 16, "tp": 2, "name": "seed-run", **flags})


def _opts(**kw):
    base = dict(cluster="k8s", name="seed-run", image="registry.example/org/train:1.0", kind="jobset")
    base.update(kw)
    if not base.get("pvc"):  # multi-node runs without a claim must say so
        base.setdefault("ephemeral", True)
    return LaunchOptions.model_validate(base)


def _render(spec=None, profile=None, **kw):
    spec = spec or _spec()
    return render_objects(spec, _opts(**kw), profile or Profile())


def _workload(objs):
    return objs[-1]


def _pod_spec(obj):
    k = obj["kind"]
    if k == "JobSet":
        return obj["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    if k == "PyTorchJob":
        return obj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    if k == "Job":
        return obj["spec"]["template"]["spec"]
    raise AssertionError(k)


# ---------------------------------------------------------------------------------------------- golden

@pytest.mark.parametrize("kind", KINDS)
def test_golden(kind):
    """Full-featured render per kind: profile (placement, RDMA device, NCCL env), Kueue queue, checkpoint PVC."""
    text = to_yaml_documents(_render(profile=load_profile(PROFILE), kind=kind, queue="team-a", pvc="ckpt-pvc",
                                     rdma="device", steps=1000, save_every=100))
    path = GOLDEN / f"k8s_{kind.replace('-', '_')}.yaml"
    if os.environ.get("SORAPLAN_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} differs (SORAPLAN_UPDATE_GOLDEN=1 to regenerate after review)"
    k8s_schemas.assert_valid([d for d in yaml.safe_load_all(text) if d])


# ---------------------------------------------------------------------------------------------- schemas

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rdma", ["none", "host-network", "device"])
@pytest.mark.parametrize("extras", [{}, {"queue": "q1", "pvc": "ckpt", "debug": True, "tiny": True}])
def test_all_options_schema_valid(kind, rdma, extras):
    if kind == "trainjob" and rdma == "host-network":
        with pytest.raises(UserError, match="TrainJob cannot set hostNetwork"):
            _render(kind=kind, rdma=rdma, **extras)
        return
    objs = _render(profile=load_profile(PROFILE), kind=kind, rdma=rdma, **extras)
    k8s_schemas.assert_valid(objs)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_field_fails(kind):
    """The validators must reject fields the API server would prune (typo'd tolerations) or refuse."""
    obj = copy.deepcopy(_workload(_render(kind=kind)))
    if kind == "trainjob":
        obj["spec"]["trainer"]["tolerationz"] = []
    else:
        _pod_spec(obj)["tolerationz"] = []
    assert any("tolerationz" in e for e in k8s_schemas.errors(obj))
    top = copy.deepcopy(_workload(_render(kind=kind)))
    top["spec"]["surprise"] = True
    assert any("surprise" in e for e in k8s_schemas.errors(top))
    meta = copy.deepcopy(_workload(_render(kind=kind)))
    meta["metadata"]["name"] = "Not_A_Name"
    assert k8s_schemas.errors(meta)


def test_cel_rules_are_evaluated():
    """The CRDs' x-kubernetes-validations run too: the TrainJob name rule (RFC 1035) and numProcPerNode >= 1."""
    tj = copy.deepcopy(_workload(_render(kind="trainjob")))
    tj["metadata"]["name"] = "7b-run"
    assert any("RFC 1035" in e for e in k8s_schemas.errors(tj))
    tj = copy.deepcopy(_workload(_render(kind="trainjob")))
    tj["spec"]["trainer"]["numProcPerNode"] = 0
    assert any("numProcPerNode must be greater than or equal to 1" in e for e in k8s_schemas.errors(tj))
    js = copy.deepcopy(_workload(_render(kind="jobset")))
    js["spec"]["startupPolicy"] = {"startupPolicyOrder": "InOrder"}
    js["spec"]["replicatedJobs"][0]["dependsOn"] = [{"name": "x", "status": "Ready"}]
    assert any("mutually exclusive" in e for e in k8s_schemas.errors(js))


def test_unknown_field_fails_core_kinds():
    objs = _render(kind="indexed-job")
    for obj in objs:
        bad = copy.deepcopy(obj)
        bad["spec" if "spec" in bad else "metadata"]["surprise"] = 1
        assert k8s_schemas.errors(bad), obj["kind"]


def test_structural_keeps_maps_and_preserve_unknown():
    s = k8s_schemas.structural({"type": "object", "properties": {
        "m": {"type": "object", "additionalProperties": {"type": "string"}},
        "p": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {"type": "string"}}},
        "n": {"type": "string", "nullable": True}}})
    import jsonschema

    jsonschema.Draft4Validator(s).validate({"m": {"any": "x"}, "p": {"a": "x", "b": 1}, "n": None})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(s).validate({"zzz": 1})


def test_kubernetes_validate_cli_offline(tmp_path):
    """`kubernetes-validate --strict` (its bundled schemas; no network) on the --output-dir files."""
    r = CliRunner().invoke(app, ["launch", "--cluster", "k8s", "--kind", "indexed-job", "--image", "img:1", "--gpus", "16",
                                 "--name", "cli-run", "--ephemeral", "--dry-run", "--output-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    files = sorted(tmp_path.glob("*.yaml"))
    assert [f.name for f in files] == ["00-configmap-cli-run-spec.yaml", "01-service-cli-run.yaml",
                                       "02-networkpolicy-cli-run.yaml", "03-job-cli-run.yaml"]
    assert not list(tmp_path.glob(".*tmp"))
    p = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", *map(str, files)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    bad = tmp_path / "bad.yaml"
    doc = yaml.safe_load(files[3].read_text())
    doc["spec"]["template"]["spec"]["tolerationz"] = []
    bad.write_text(yaml.safe_dump(doc))
    p = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", str(bad)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode != 0 and "tolerationz" in p.stdout + p.stderr


# ---------------------------------------------------------------------------------------------- layout and features

def test_layout_one_pod_per_node():
    objs = _render(spec=_spec(gpus=32, tp=4))
    js = _workload(objs)
    job = js["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert job["parallelism"] == job["completions"] == 4 and job["completionMode"] == "Indexed"
    c = job["template"]["spec"]["containers"][0]
    assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["PET_NNODES"] == "4" and env["PET_NPROC_PER_NODE"] == "8"
    assert env["MASTER_ADDR"] == env["PET_MASTER_ADDR"] == "seed-run-node-0-0.seed-run"
    assert env["NODE_RANK"] == env["PET_NODE_RANK"]
    assert "--tp 4" in c["command"][2] and "--gpus 32" in c["command"][2] and "--rdzv-backend=c10d" in c["command"][2]
    assert js["spec"]["network"] == {"enableDNSHostnames": True, "subdomain": "seed-run", "publishNotReadyAddresses": True}
    assert js["spec"]["failurePolicy"]["maxRestarts"] == 3 and job["backoffLimit"] == 0
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_small_world_is_one_node_and_uneven_world_is_refused():
    pt = _workload(_render(spec=_spec(gpus=4, tp=2), kind="pytorchjob"))
    assert pt["spec"]["nprocPerNode"] == "4" and list(pt["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    with pytest.raises(UserError, match=r"world size \(12\) % GPUs per node \(8\)"):
        _render(spec=_spec(gpus=12, tp=2))
    two = _workload(_render(spec=_spec(gpus=12, tp=2), gpus_per_node=4, kind="pytorchjob"))
    assert two["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2


def test_shm_tolerations_rdma_queue_pvc():
    prof = load_profile(PROFILE)
    obj = _workload(_render(profile=prof, kind="indexed-job", rdma="host-network", queue="team-a", pvc="ckpt"))
    ps = obj["spec"]["template"]["spec"]
    assert obj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a" and obj["spec"]["suspend"] is True
    assert ps["hostNetwork"] is True and ps["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert ps["subdomain"] == "seed-run" and ps["restartPolicy"] == "Never"   # podFailurePolicy needs Never
    assert ps["nodeSelector"] == {**prof.node_selector, **prof.gpu_labels["a100-80g"]} and ps["tolerations"][0]["key"] == "nvidia.com/gpu"
    vols = {v["name"]: v for v in ps["volumes"]}
    assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{prof.shm_gib}Gi"}
    assert vols["checkpoints"]["persistentVolumeClaim"] == {"claimName": "ckpt"}
    c = ps["containers"][0]
    assert c["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    assert "--resume auto" in c["command"][2]
    dev = _workload(_render(profile=prof, kind="jobset", rdma="device"))
    pod = dev["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    assert pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == ",".join(prof.rdma.networks)
    assert pod["spec"]["containers"][0]["resources"]["limits"][prof.rdma.resource] == str(prof.rdma.count)
    assert "hostNetwork" not in pod["spec"]
    pt = _workload(_render(kind="pytorchjob", queue="q"))
    assert pt["spec"]["runPolicy"]["suspend"] is True
    tj = _workload(_render(kind="trainjob", queue="q"))
    assert tj["spec"]["suspend"] is True and tj["spec"]["trainer"]["numNodes"] == 2


def test_no_queue_means_not_suspended():
    for kind in KINDS:
        text = to_yaml_documents(_render(kind=kind))
        assert "suspend" not in text and "kueue" not in text


# ---------------------------------------------------------------------------------------------- names

@pytest.mark.parametrize("raw, want", [("My_Run.1", "my-run-1"), ("a__b", "a-b"), ("RUN", "run"), ("x-", "x")])
def test_sanitize(raw, want):
    assert sanitize_label(raw) == want


def test_names_are_rfc1035_for_services_and_trainjobs():
    for kind in KINDS:
        assert object_name("7B_run", kind, 4).startswith("r-7b-run-")
        objs = _render(name="7B_run", kind=kind)
        k8s_schemas.assert_valid(objs)
        assert all(o["metadata"]["name"][0].isalpha() for o in objs)


def test_long_names_keep_hostnames_within_63():
    long_a, long_b = "a" * 63, "a" * 62 + "b"
    for kind in KINDS:
        for nodes in (1, 9, 10, 1000):
            na, nb = object_name(long_a, kind, nodes), object_name(long_b, kind, nodes)
            assert na != nb
            assert max(len(h) for h in pod_hostnames(na, kind, nodes)) <= DNS_LABEL_MAX
    objs = _render(spec=_spec(gpus=16), name="R" * 63)
    k8s_schemas.assert_valid(objs)


@pytest.mark.parametrize("flag, value, msg", [
    ("namespace", "Team_A", "--namespace: 'Team_A' is not a valid Kubernetes name"),
    ("namespace", "a" * 64, "--namespace"),
    ("pvc", "ckpt pvc", "--pvc: 'ckpt pvc' is not a valid Kubernetes object name"),
    ("queue", "q;rm -rf /", "--queue: 'q;rm -rf /' is not a valid label value"),
    ("image", "img:1 --privileged", "--image"),
    ("image", None, "--image: a container image is required"),
])
def test_invalid_user_values_are_one_clear_error(flag, value, msg):
    with pytest.raises(UserError) as e:
        _render(**{flag: value})
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_cli_bad_value_exit_2_one_line():
    r = CliRunner().invoke(app, ["launch", "--cluster", "k8s", "--image", "img:1", "--namespace", "Bad_NS", "--dry-run"])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "--namespace" in r.output and "Traceback" not in r.output


# ---------------------------------------------------------------------------------------------- the command line

def _run_script(script: str, env: dict[str, str], tmp_path: Path) -> list[str]:
    """Run the pod's sh script with a stub `torchrun` that records its argv (one JSON list)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    stub = bindir / "torchrun"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    getent = bindir / "getent"   # every name resolves (the pods' wait for the store host's DNS name)
    getent.write_text("#!/bin/sh\nexit 0\n")
    getent.chmod(0o755)
    full = {"PATH": f"{bindir}:/usr/bin:/bin", **env}
    p = subprocess.run(["/bin/sh", "-c", script], env=full, capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _arg(argv: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in argv if a.startswith(name + "="))


@pytest.mark.parametrize("env, addr, rank", [
    ({"MASTER_ADDR": "m0", "MASTER_PORT": "23456", "NODE_RANK": "1"}, "m0:23456", "1"),              # MASTER_* only
    ({"PET_MASTER_ADDR": "t0", "PET_MASTER_PORT": "29400", "PET_NODE_RANK": "3", "PET_NNODES": "4"}, "t0:29400", "3"),
    ({"MASTER_ADDR": "x", "PET_MASTER_ADDR": "p", "PET_MASTER_PORT": "1", "JOB_COMPLETION_INDEX": "2"}, "p:1", "2"),
])
def test_one_command_line_under_every_controller(env, addr, rank, tmp_path):
    script = _workload(_render(kind="jobset"))["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
        "containers"][0]["command"][2]
    argv = _run_script(script, env, tmp_path)
    assert _arg(argv, "--rdzv-endpoint") == addr and _arg(argv, "--node-rank") == rank
    assert _arg(argv, "--rdzv-backend") == "c10d"
    assert argv[argv.index("-m"):][:3] == ["-m", "soraplan", "train"]


def test_injection_ish_arguments_stay_literal(tmp_path):
    evil = ["$(touch pwned1)", "`touch pwned2`", "a'; touch pwned3 #", '"; touch pwned4; "', "x\ny"]
    spec = _spec()
    opts = _opts(train_args=tuple(evil), env={"EVIL": "$(touch pwned5)"})
    objs = render_objects(spec, opts, Profile())
    k8s_schemas.assert_valid(objs)
    from soraplan.launch.k8s_render import make_context

    script = command_script(make_context(spec, opts, Profile()))
    argv = _run_script(script, {"EVIL": "$(touch pwned5)", "JOB_COMPLETION_INDEX": "1"}, tmp_path)
    assert argv[-len(evil):] == evil
    assert not list(tmp_path.glob("pwned*"))
    with pytest.raises(Exception, match="valid run name"):
        _opts(name="a'; touch /tmp/pwned #")
    with pytest.raises(UserError, match="environment variable name"):
        _render(env={"BAD NAME": "x"})


def test_spec_configmap_round_trips(tmp_path):
    spec = _spec(frames=480)
    cm = _render(spec=spec)[0]
    p = tmp_path / "spec.yaml"
    p.write_text(cm["data"]["spec.yaml"])
    assert build_spec(config=p) == spec


# ---------------------------------------------------------------------------------------------- CLI

def test_cli_dry_run_multi_document_stdout():
    r = CliRunner().invoke(app, ["launch", "--cluster", "k8s", "--image", "img:1", "--gpus", "16", "--tp", "2",
                                 "--kind", "pytorchjob", "--name", "cli-run", "--ephemeral", "--dry-run"])
    assert r.exit_code == 0, r.output
    docs = [d for d in yaml.safe_load_all(r.output) if d]
    assert [d["kind"] for d in docs] == ["ConfigMap", "NetworkPolicy", "PyTorchJob"]
    k8s_schemas.assert_valid(docs)


def test_profile_errors_are_one_line(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("tolerations: [{key: a, operator: Sometimes}]\n")
    with pytest.raises(UserError, match=r"profile.tolerations.0.operator"):
        load_profile(bad)
    bad.write_text("node_selector: {'bad key!': x}\n")
    with pytest.raises(UserError, match=r"profile.node_selector: 'bad key!'"):
        load_profile(bad)
    bad.write_text("gpu_resorce: x\n")
    with pytest.raises(UserError, match="gpu_resorce"):
        load_profile(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_profile(tmp_path / "missing.yaml")
