"""What makes the k8s manifests safe to run, pinned on the rendered objects of all four kinds.

Rendezvous with exactly one store host, checkpoint storage, pod sizing, RDMA rails, stop timing, the job
environment shared with Slurm, failure policies, pod security, secrets, the NetworkPolicy, placement and
lifetimes. The pods' command lines are run under `sh` with stub `torchrun` / `getent`, once per node rank,
with the variables each controller sets.
"""

from __future__ import annotations

import json
import math
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import k8s_schemas
from soraplan.cli import app
from soraplan.launch.k8s_checks import check_claim_modes, claim_modes, crd_has_runtime_patches
from soraplan.launch.k8s_profiles import Profile, load_profile
from soraplan.launch.k8s_render import render_objects
from soraplan.launch.k8s_sizing import HOST_PORT_BASE, HOST_PORT_SPAN, stop_timing
from soraplan.launch.nccl_profiles import BASE_ENV, PROFILES, job_env
from soraplan.launch.options import LaunchOptions
from soraplan.planner.checkpoint import checkpoint_bytes
from soraplan.planner.config import build_spec
from soraplan.planner.errors import UserError
from soraplan.planner.hardware import host_share
from soraplan.planner.params import total_params
from soraplan.planner.train import train_budget

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "templates" / "k8s-profile-example.yaml"
KINDS = ("jobset", "pytorchjob", "trainjob", "indexed-job")
NAME = "hard-run"


def spec(**flags):
    return build_spec(flags={"gpus": 32, "tp": 4, "name": NAME, **flags})


def opts(**kw):
    base = dict(cluster="k8s", name=NAME, image="img:1", kind="jobset")
    base.update(kw)
    if not base.get("pvc"):
        base.setdefault("ephemeral", True)
    return LaunchOptions.model_validate(base)


def render(sp=None, profile=None, **kw):
    return render_objects(sp or spec(), opts(**kw), profile or Profile())


def workload(objs):
    return objs[-1]


def pod_specs(obj):
    """Every pod spec of the workload (the TrainJob's is its runtime patch)."""
    k = obj["kind"]
    if k == "JobSet":
        return [obj["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]]
    if k == "PyTorchJob":
        return [r["template"]["spec"] for r in obj["spec"]["pytorchReplicaSpecs"].values()]
    if k == "Job":
        return [obj["spec"]["template"]["spec"]]
    patch = obj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    return [patch["template"]["spec"]["template"]["spec"]]


def main_container(obj):
    """(command, env, resources) of the training container."""
    if obj["kind"] == "TrainJob":
        t = obj["spec"]["trainer"]
        return t["command"], t["env"], t["resourcesPerNode"]
    c = pod_specs(obj)[0]["containers"][0]
    return c["command"], c["env"], c["resources"]


def env_map(env):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}


# ---------------------------------------------------------------------------------------------- rendezvous

def _stub_bin(tmp_path: Path, getent_fails: int = 0) -> Path:
    b = tmp_path / "bin"
    b.mkdir(exist_ok=True)
    tr = b / "torchrun"
    tr.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    tr.chmod(tr.stat().st_mode | stat.S_IEXEC)
    count = tmp_path / "getent-calls"
    count.write_text("")
    ge = b / "getent"   # records each lookup; fails the first `getent_fails` ones (DNS not propagated yet)
    ge.write_text(f"#!/bin/sh\necho \"$*\" >> {count}\n[ $(wc -l < {count}) -gt {getent_fails} ]\n")
    ge.chmod(0o755)
    return b


def _pod_env(obj, kind: str, rank: int, nodes: int, port: int, name: str, operator_node_rank: bool) -> dict[str, str]:
    """The container environment of node `rank`'s pod: the manifest's values plus what the controller sets."""
    _, env, _ = main_container(obj)
    out: dict[str, str] = {}
    for e in env:
        if "value" in e:
            out[e["name"]] = e["value"]
        elif "fieldRef" in e["valueFrom"]:   # the completion index annotation
            out[e["name"]] = str(rank)
    if kind in ("jobset", "indexed-job", "trainjob"):
        out["JOB_COMPLETION_INDEX"] = str(rank)   # the Job controller sets it in every Indexed Job pod
    if kind == "pytorchjob":   # training operator v1: MASTER_*, WORLD_SIZE, RANK (= replica rank), PET_*
        out |= {"MASTER_ADDR": f"{name}-master-0", "MASTER_PORT": str(port), "RANK": str(rank),
                "WORLD_SIZE": str(nodes), "PET_NNODES": str(nodes), "PET_NPROC_PER_NODE": "8"}
        if operator_node_rank:
            out["PET_NODE_RANK"] = str(rank)
    if kind == "trainjob":     # Trainer's torch plugin: PET_* with the node rank from the completion index
        out |= {"PET_NNODES": str(nodes), "PET_NPROC_PER_NODE": "8", "PET_MASTER_ADDR": f"{name}-node-0-0.{name}",
                "PET_MASTER_PORT": "29400"}
        if operator_node_rank:
            out["PET_NODE_RANK"] = str(rank)
    return out


def _run(script: str, env: dict[str, str], bindir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", script], env={"PATH": f"{bindir}:/usr/bin:/bin", **env},
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)


def _conf(argv: list[str]) -> dict[str, str]:
    text = next(a.split("=", 1)[1] for a in argv if a.startswith("--rdzv-conf="))
    return dict(kv.split("=", 1) for kv in text.split(","))


@pytest.mark.parametrize("kind, operator_node_rank", [
    ("jobset", True), ("indexed-job", True),                        # the rank comes from the manifest
    ("pytorchjob", True), ("pytorchjob", False), ("trainjob", True), ("trainjob", False),   # operator with/without PET_NODE_RANK
])
def test_exactly_one_store_host_per_kind(kind, operator_node_rank, tmp_path):
    """Four pods, each with its controller's variables: node rank 0 alone hosts the c10d store, all pods
    agree on the endpoint, the join timeout covers image pulls, and non-hosts wait for the host's name."""
    obj = workload(render(kind=kind))
    cmd, _, _ = main_container(obj)
    nodes, name, port = 4, obj["metadata"]["name"], 29500
    bindir = _stub_bin(tmp_path)
    hosts, endpoints, ranks = [], set(), []
    for rank in range(nodes):
        p = _run(cmd[2], _pod_env(obj, kind, rank, nodes, port, name, operator_node_rank), bindir, tmp_path)
        assert p.returncode == 0, p.stderr
        argv = json.loads(p.stdout)
        conf = _conf(argv)
        assert conf["join_timeout"] == "1800"
        hosts += [rank] if conf["is_host"] == "1" else []
        assert conf["is_host"] in ("0", "1")
        endpoints.add(next(a for a in argv if a.startswith("--rdzv-endpoint=")))
        ranks.append(next(a for a in argv if a.startswith("--node-rank=")))
    assert hosts == [0]
    assert len(endpoints) == 1 and ranks == [f"--node-rank={r}" for r in range(nodes)]
    lookups = (tmp_path / "getent-calls").read_text().split("\n")
    assert len([x for x in lookups if x]) == nodes - 1   # every pod but the host waits for DNS


def test_non_host_waits_for_dns_and_multi_node_without_rank_fails_fast(tmp_path):
    obj = workload(render(kind="jobset"))
    cmd, _, _ = main_container(obj)
    env = _pod_env(obj, "jobset", 2, 4, 29500, obj["metadata"]["name"], True)
    bindir = _stub_bin(tmp_path, getent_fails=1)
    p = _run(cmd[2], env, bindir, tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "getent-calls").read_text().count(f"hosts {NAME}-node-0-0.{NAME}") == 2
    # no rank from anywhere on a 4-node run: refuse instead of letting every pod host the store
    p = _run(cmd[2], {}, _stub_bin(tmp_path), tmp_path)
    assert p.returncode == 2 and "no node rank" in p.stderr
    one = main_container(workload(render(sp=spec(gpus=8, tp=4))))[0]
    p = _run(one[2], {}, _stub_bin(tmp_path), tmp_path)
    assert p.returncode == 0 and _conf(json.loads(p.stdout))["is_host"] == "1"


# ---------------------------------------------------------------------------------------------- storage

@pytest.mark.parametrize("kind", KINDS)
def test_multi_node_needs_a_claim_or_ephemeral(kind):
    with pytest.raises(UserError) as e:
        render_objects(spec(), LaunchOptions(cluster="k8s", name=NAME, image="img:1", kind=kind), Profile())
    assert str(e.value).startswith("--pvc: a 4-node run needs checkpoint storage") and "\n" not in str(e.value)
    render_objects(spec(gpus=8), LaunchOptions(cluster="k8s", name=NAME, image="img:1", kind=kind), Profile())


def test_cli_multi_node_without_pvc_exit_2_one_line():
    r = CliRunner().invoke(app, ["launch", "--cluster", "k8s", "--image", "img:1", "--gpus", "16", "--dry-run"])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0 and "--ephemeral" in r.output


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pvc", [None, "ckpt"])
def test_run_dir_is_the_mounted_one(kind, pvc):
    """`soraplan train --run-dir` is <mount_path>/<name> on the checkpoints volume, in every pod; one source."""
    prof = Profile(mount_path="/mnt/ckpt")
    obj = workload(render(kind=kind, pvc=pvc, profile=prof))
    cmd, env, _ = main_container(obj)
    name = obj["metadata"]["name"]
    assert f"--run-dir /mnt/ckpt/{name} --resume auto" in cmd[2]
    assert "SORAPLAN_RUN_DIR" not in env_map(env)
    for ps in pod_specs(obj):
        vols = {v["name"]: v for v in ps["volumes"]}
        assert vols["checkpoints"] == ({"name": "checkpoints", "persistentVolumeClaim": {"claimName": pvc}} if pvc
                                       else {"name": "checkpoints", "emptyDir": {}})
        mounts = {m["name"]: m["mountPath"] for m in ps["containers"][0]["volumeMounts"]}
        assert mounts["checkpoints"] == "/mnt/ckpt"
        assert "workingDir" not in ps["containers"][0]


def test_claim_access_modes():
    check_claim_modes("c", ["ReadWriteMany"], 4)
    check_claim_modes("c", ["ReadWriteOnce"], 1)
    check_claim_modes("c", ["ReadWriteOncePod"], 1)
    with pytest.raises(UserError, match="a 4-node run needs ReadWriteMany"):
        check_claim_modes("c", ["ReadWriteOnce"], 4)
    with pytest.raises(UserError, match="ReadOnlyMany"):
        check_claim_modes("c", ["ReadOnlyMany"], 1)
    assert claim_modes({"spec": {"accessModes": ["ReadWriteOnce"]}, "status": {"accessModes": ["ReadWriteMany"]}}) == \
        ["ReadWriteMany"]
    assert claim_modes({"spec": {"accessModes": ["ReadWriteOnce"]}}) == ["ReadWriteOnce"]


# ---------------------------------------------------------------------------------------------- sizing

@pytest.mark.parametrize("kind", KINDS)
def test_pods_are_never_best_effort_and_shm_is_counted(kind):
    obj = workload(render(kind=kind))
    _, _, res = main_container(obj)
    share = host_share("a100-80g")
    assert res["requests"]["cpu"] == res["limits"]["cpu"] == str(share.cpus_per_gpu * 8)
    assert res["requests"]["memory"] == res["limits"]["memory"] == f"{share.mem_gib_per_gpu * 8 + 64}Gi"  # + /dev/shm
    burst = main_container(workload(render(kind=kind, profile=Profile(qos="burstable", cpu=40, memory_gib=500,
                                                                     shm_gib=32))))[2]
    assert burst["requests"]["cpu"] == "40" and "cpu" not in burst["limits"]
    assert burst["requests"]["memory"] == burst["limits"]["memory"] == "532Gi"
    h200 = main_container(workload(render(sp=spec(gpu="h200"), kind=kind)))[2]
    assert h200["requests"]["memory"] == f"{host_share('h200').mem_gib_per_gpu * 8 + 64}Gi"


# ---------------------------------------------------------------------------------------------- RDMA

@pytest.mark.parametrize("kind", KINDS)
def test_rdma_device_gives_one_device_and_network_per_rail(kind):
    prof = load_profile(PROFILE)
    obj = workload(render(kind=kind, rdma="device", profile=prof, pvc="ckpt"))
    _, env, res = main_container(obj)
    assert res["requests"]["rdma/ib"] == res["limits"]["rdma/ib"] == "8"
    for ps in pod_specs(obj):
        assert "hostNetwork" not in ps
    e = env_map(env)
    assert e["NCCL_IB_DISABLE"] == "0" and e["NCCL_SOCKET_IFNAME"] == "eth0" and e["NCCL_IB_HCA"] == "mlx5"
    if kind == "trainjob":
        meta = obj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
            "template"]["spec"]["template"]["metadata"]
    elif kind == "jobset":
        meta = obj["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["metadata"]
    elif kind == "pytorchjob":
        meta = obj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]
    else:
        meta = obj["spec"]["template"]["metadata"]
    assert meta["annotations"]["k8s.v1.cni.cncf.io/networks"].split(",") == [f"default/ib-rail-{i}" for i in range(8)]
    default = main_container(workload(render(kind=kind, rdma="device")))[2]
    assert default["limits"]["rdma/ib"] == "8"   # one rail per GPU unless the profile says otherwise
    with pytest.raises(UserError, match="2 networks for 8 RDMA devices"):
        render(kind=kind, rdma="device", profile=Profile.model_validate({"rdma": {"networks": ["a/x", "a/y"]}}))


@pytest.mark.parametrize("kind", ["jobset", "pytorchjob", "indexed-job"])
def test_rdma_host_network_gets_devices_host_interfaces_and_a_port_per_job(kind):
    obj = workload(render(kind=kind, rdma="host-network", profile=load_profile(PROFILE).model_copy(
        update={"master_port": None}), pvc="ckpt"))
    cmd, env, res = main_container(obj)
    e = env_map(env)
    assert res["limits"]["rdma/ib"] == "8"                       # /dev/infiniband for hostNetwork pods too
    assert e["NCCL_SOCKET_IFNAME"] == "bond0" and e["NCCL_IB_DISABLE"] == "0"
    assert pod_specs(obj)[0]["hostNetwork"] is True
    ports = set()
    for run in ("job-a", "job-b", "job-c"):
        w = workload(render(kind=kind, rdma="host-network", name=run))
        c, env2, _ = main_container(w)
        p = pod_specs(w)[0]["containers"][0]["ports"][0]["containerPort"]
        assert HOST_PORT_BASE <= p < HOST_PORT_BASE + HOST_PORT_SPAN
        assert f"MASTER_PORT:-{p}" in c[2]
        if kind != "pytorchjob":
            assert env_map(env2)["MASTER_PORT"] == env_map(env2)["PET_MASTER_PORT"] == str(p)
        assert workload(render(kind=kind, rdma="host-network", name=run)) == w   # same run, same port
        ports.add(p)
    assert len(ports) == 3
    assert env_map(main_container(workload(render(kind=kind, rdma="host-network")))[1])["NCCL_SOCKET_IFNAME"] == \
        "^lo,docker0"
    none = env_map(main_container(workload(render(kind=kind)))[1])
    assert none["NCCL_SOCKET_IFNAME"] == "eth0" and none["NCCL_IB_DISABLE"] == "1"


# ---------------------------------------------------------------------------------------------- stop timing

def test_checkpoint_bytes_is_params_times_saved_bytes():
    sp = spec()
    assert checkpoint_bytes(sp) == total_params(sp) * (2 + 4 + 8)   # bf16 weights + fp32 master + 2 fp32 moments


@pytest.mark.parametrize("kind", KINDS)
def test_grace_period_covers_a_step_and_a_checkpoint_write(kind):
    sp = spec()
    slow, fast = Profile(checkpoint_write_gbs=0.5), Profile(checkpoint_write_gbs=20)
    t = stop_timing(sp, slow, 120)
    assert t.shutdown_timeout_s >= t.step_s + t.write_s and t.write_s == checkpoint_bytes(sp) / 0.5e9
    assert t.grace_s == max(120, t.shutdown_timeout_s + 30) and t.shutdown_timeout_s > 30
    obj = workload(render(kind=kind, profile=slow))
    _, env, _ = main_container(obj)
    e = env_map(env)
    assert e["PET_SHUTDOWN_TIMEOUT"] == e["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == str(t.shutdown_timeout_s)
    for ps in pod_specs(obj):
        assert ps["terminationGracePeriodSeconds"] == t.grace_s > t.shutdown_timeout_s
    assert pod_specs(workload(render(kind=kind, profile=fast)))[0]["terminationGracePeriodSeconds"] < t.grace_s
    assert stop_timing(sp, fast, 900).grace_s == 900   # launch.grace_s is a floor
    assert math.isfinite(t.step_s)


# ---------------------------------------------------------------------------------------------- environment

@pytest.mark.parametrize("kind", KINDS)
def test_nccl_profile_and_always_on_environment_as_on_slurm(kind):
    obj = workload(render(kind=kind, nccl_profile="ethernet", debug=True))
    e = env_map(main_container(obj)[1])
    slurm = job_env("ethernet", True)
    for k in list(BASE_ENV) + ["NCCL_SOCKET_NTHREADS", "NCCL_NSOCKS_PERTHREAD", "NCCL_DEBUG", "TORCH_DISTRIBUTED_DEBUG"]:
        assert e[k] == slurm[k], k
    assert e["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1" and e["NCCL_DEBUG"] == "INFO"
    assert env_map(main_container(workload(render(kind=kind)))[1])["NCCL_DEBUG"] == PROFILES["default"]["NCCL_DEBUG"]
    with pytest.raises(UserError, match="unknown profile 'bogus'"):
        render(kind=kind, nccl_profile="bogus")


def test_unknown_nccl_profile_cli_exit_2_and_steps_default_from_the_plan():
    r = CliRunner().invoke(app, ["launch", "--cluster", "k8s", "--image", "img:1", "--gpus", "16", "--ephemeral",
                                 "--nccl-profile", "bogus", "--dry-run"])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0 and "nccl_profile" in r.output
    sp = spec()
    cmd = main_container(workload(render(sp=sp)))[0][2]
    assert f"--steps {train_budget(sp).steps} " in cmd
    assert "--steps 7 " in main_container(workload(render(sp=sp, steps=7)))[0][2]


# ---------------------------------------------------------------------------------------------- failure policies

def test_jobset_blocking_recreate_and_free_disruption_restarts():
    js = workload(render(kind="jobset", max_retries=5))
    fp = js["spec"]["failurePolicy"]
    assert fp["restartStrategy"] == "BlockingRecreate" and fp["maxRestarts"] == 5
    assert fp["rules"][0] == {"name": "disruptionRestartsFree", "action": "RestartJobSetAndIgnoreMaxRestarts",
                              "onJobFailureReasons": ["PodFailurePolicy"]}
    assert fp["rules"][1]["action"] == "FailJobSet" and fp["rules"][1]["onJobFailureReasons"] == ["DeadlineExceeded"]
    job = js["spec"]["replicatedJobs"][0]["template"]["spec"]
    # the only FailJob rule is the disruption one: reason PodFailurePolicy means preemption / node loss
    assert job["podFailurePolicy"]["rules"] == [{"action": "FailJob", "onPodConditions": [
        {"type": "DisruptionTarget", "status": "True"}]}]
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"


def test_pytorchjob_cleans_running_pods_and_indexed_job_budgets_per_index():
    pt = workload(render(kind="pytorchjob"))
    assert pt["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
    job = workload(render(kind="indexed-job", max_retries=4))["spec"]
    assert job["backoffLimitPerIndex"] == 4 and job["maxFailedIndexes"] == 0 and "backoffLimit" not in job
    assert job["podFailurePolicy"]["rules"] == [{"action": "Ignore", "onPodConditions": [
        {"type": "DisruptionTarget", "status": "True"}]}]
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_trainjob_patch_and_priority_class_where_allowed():
    prof = load_profile(PROFILE)
    for kind in ("jobset", "pytorchjob", "indexed-job"):
        assert all(ps["priorityClassName"] == "training-high" for ps in pod_specs(workload(render(kind=kind, profile=prof,
                                                                                                 pvc="c"))))
    pt = workload(render(kind="pytorchjob", profile=prof, pvc="c"))
    assert pt["spec"]["runPolicy"]["schedulingPolicy"] == {"priorityClass": "training-high"}
    tj = workload(render(kind="trainjob", profile=prof, pvc="c"))
    assert "priorityClassName" not in json.dumps(tj)   # the runtime patch schema has no such field
    assert tj["spec"]["runtimePatches"][0]["manager"] == "soraplan.dev/launch"
    k8s_schemas.assert_valid([tj])


@pytest.mark.parametrize("kind", KINDS)
def test_deadline_from_time_min_and_ttl(kind):
    obj = workload(render(kind=kind))
    text = json.dumps(obj)
    assert "activeDeadlineSeconds" not in text   # no --time-min: no deadline
    obj = workload(render(kind=kind, time_min=90))
    where = {"jobset": lambda o: o["spec"]["replicatedJobs"][0]["template"]["spec"],
             "pytorchjob": lambda o: o["spec"]["runPolicy"], "trainjob": lambda o: o["spec"],
             "indexed-job": lambda o: o["spec"]}[kind](obj)
    assert where["activeDeadlineSeconds"] == 5400
    ttl = (obj["spec"]["runPolicy"] if kind == "pytorchjob" else obj["spec"]).get("ttlSecondsAfterFinished")
    assert ttl == (None if kind == "trainjob" else 259200)
    k8s_schemas.assert_valid([obj])


# ---------------------------------------------------------------------------------------------- security

BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}


def pss_violations(ps: dict, level: str) -> list[str]:
    """The Pod Security Standards checks these pods can hit (baseline; restricted adds its own)."""
    out = []
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if ps.get(f):
            out.append(f)
    for s in (ps.get("securityContext") or {}).get("sysctls") or []:
        if s["name"] not in SAFE_SYSCTLS:
            out.append(s["name"])
    for c in ps["containers"]:
        sc = c.get("securityContext") or {}
        extra = set((sc.get("capabilities") or {}).get("add") or []) - BASELINE_CAPS
        out += sorted(extra)
        if level == "restricted":
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append("allowPrivilegeEscalation")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                out.append("drop ALL")
            if not (sc.get("runAsNonRoot") or (ps.get("securityContext") or {}).get("runAsNonRoot")):
                out.append("runAsNonRoot")
            if ((ps.get("securityContext") or {}).get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                out.append("seccomp")
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_pod_security_levels(kind, level):
    obj = workload(render(kind=kind, rdma="device", pod_security=level))
    assert all(pss_violations(ps, level) == [] for ps in pod_specs(obj))
    priv = workload(render(kind=kind, rdma="device"))
    assert "IPC_LOCK" in pss_violations(pod_specs(priv)[0], "baseline")   # the default level keeps IPC_LOCK
    k8s_schemas.assert_valid([obj])
    if kind != "trainjob":
        with pytest.raises(UserError, match=f"--pod-security {level}: --rdma host-network needs hostNetwork"):
            render(kind=kind, rdma="host-network", pod_security=level)


@pytest.mark.parametrize("kind", KINDS)
def test_secrets_by_reference_only(kind):
    prof = Profile.model_validate({"secret_env": {"HF_TOKEN": {"secret": "hf", "key": "token"}},
                                   "env": {"HF_TOKEN": "plain-would-leak"},
                                   "env_from_secrets": [] if kind == "trainjob" else ["wandb"]})
    obj = workload(render(kind=kind, profile=prof))
    _, env, _ = main_container(obj)
    hf = [e for e in env if e["name"] == "HF_TOKEN"]
    assert hf == [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]
    assert "plain-would-leak" not in json.dumps(obj)
    if kind != "trainjob":
        assert pod_specs(obj)[0]["containers"][0]["envFrom"] == [{"secretRef": {"name": "wandb"}}]
    else:
        with pytest.raises(UserError, match="TrainJob cannot take envFrom"):
            render(kind=kind, profile=Profile.model_validate({"env_from_secrets": ["wandb"]}))
    k8s_schemas.assert_valid([obj])


@pytest.mark.parametrize("kind", KINDS)
def test_network_policy_admits_only_the_runs_pods(kind):
    objs = render(kind=kind)
    (np,) = [o for o in objs if o["kind"] == "NetworkPolicy"]
    name = workload(objs)["metadata"]["name"]
    own = {"matchLabels": {"soraplan.dev/run": name}}
    assert np["spec"]["podSelector"] == own and np["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = np["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": own}]
    rdzv = [29400, 29500] if kind == "trainjob" else [29500]   # Trainer sets its own PET_MASTER_PORT (29400)
    assert rule["ports"] == [{"protocol": "TCP", "port": p} for p in rdzv] + [
        {"protocol": "TCP", "port": 40000, "endPort": 49999}]
    for ps in pod_specs(workload(objs)):   # NCCL's listening ports come from the range the policy opens
        assert {"name": "net.ipv4.ip_local_port_range", "value": "40000 49999"} in ps["securityContext"]["sysctls"]
    k8s_schemas.assert_valid(objs)
    assert [o["kind"] for o in objs].index("NetworkPolicy") < len(objs) - 1   # before the workload
    if kind != "trainjob":   # policies do not apply to host-network pods: none is rendered, nor the sysctl
        hn = render(kind=kind, rdma="host-network")
        assert "NetworkPolicy" not in [o["kind"] for o in hn]
        assert "sysctls" not in json.dumps(workload(hn))
    assert "NetworkPolicy" not in [o["kind"] for o in render(kind=kind, profile=Profile(network_policy=False))]


# ---------------------------------------------------------------------------------------------- placement

@pytest.mark.parametrize("kind", KINDS)
def test_node_selector_for_the_planned_gpu(kind):
    prof = load_profile(PROFILE)
    for gpu, label in (("a100-80g", "NVIDIA-A100-SXM4-80GB"), ("h100-sxm", "NVIDIA-H100-80GB-HBM3")):
        obj = workload(render(sp=spec(gpu=gpu), kind=kind, profile=prof, pvc="c"))
        for ps in pod_specs(obj):
            assert ps["nodeSelector"] == {"node-role.example.com/training": "true", "nvidia.com/gpu.product": label}
    with pytest.raises(UserError, match="no node labels for the planned GPU 'l40s'"):
        render(sp=spec(gpu="l40s", tp=2, gpus=16), kind=kind, profile=prof, pvc="c")


def test_jobset_exclusive_topology_from_the_profile():
    js = workload(render(kind="jobset", profile=Profile(exclusive_topology="topology.kubernetes.io/zone")))
    assert js["metadata"]["annotations"] == {"alpha.jobset.sigs.k8s.io/exclusive-topology": "topology.kubernetes.io/zone"}
    assert "annotations" not in workload(render(kind="jobset"))["metadata"]
    k8s_schemas.assert_valid([js])


def test_trainjob_crd_detection():
    crd_dir = ROOT / ".." / "shared" / "k8s-crds"
    import yaml

    crd = yaml.safe_load((crd_dir / "trainer.kubeflow.org_trainjobs.yaml").read_text())
    assert crd_has_runtime_patches(crd)
    old = json.loads(json.dumps(crd))
    props = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    props["podSpecOverrides"] = props.pop("runtimePatches")
    assert not crd_has_runtime_patches(old)
