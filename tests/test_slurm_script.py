"""Pure tests of the Slurm renderers: golden sbatch text, allocation arithmetic, submitit/script parity,
quoting and rejection of user-typed values. No cluster needed (the real-cluster tests are test_slurm_e2e.py).

Regenerate the golden files after an intended change:  SORAPLAN_UPDATE_GOLDEN=1 pytest tests/test_slurm_script.py
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from soraplan.launch.allocation import allocate, master_port
from soraplan.launch.options import LaunchOptions
from soraplan.launch.slurm import executor_parameters
from soraplan.launch.slurm_script import render_sbatch, train_argv
from soraplan.planner.config import build_spec
from soraplan.planner.errors import UserError
from soraplan.planner.estimate import estimate

GOLDEN = Path(__file__).parent / "golden"


def _plan(**flags):
    spec = build_spec(flags=flags)
    return spec, estimate(spec, compare=False)


CASES = {
    # the test cluster's layout: TP=2 x DP=2 on 2 nodes x 2 GPUs
    "basic": (dict(tp=2, dp=2), dict(name="demo", run_root=Path("/scratch/runs"), gpus_per_node=2, cpus_per_task=2,
                                     steps=40, tiny=True, save_every=4)),
    # a production shape: 6B on 32 H100s, every optional directive and the debug bundle
    "full": (dict(tp=4, gpus=32, gpu="h100-sxm"),
             dict(name="sora-6b", run_root=Path("/lustre/proj/runs"), partition="gpu", account="video-ml",
                  qos="high", time_min=2880, mem_gib=1800, cpus_per_task=12, max_retries=5, grace_s=300,
                  nccl_profile="infiniband", debug=True, steps=100000, save_every=500, python="/opt/venv/bin/python",
                  train_args=("--log-every", "50"), env={"WANDB_MODE": "offline"})),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_sbatch(case):
    flags, opts = CASES[case]
    spec, plan = _plan(**flags)
    text = render_sbatch(spec, plan, LaunchOptions(**opts))
    path = GOLDEN / f"sbatch_{case}.sh"
    if os.environ.get("SORAPLAN_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_allocation_one_task_per_gpu():
    spec, plan = _plan(tp=4, gpus=32, gpu="h100-sxm")
    a = allocate(spec, LaunchOptions())
    assert (a.world, a.nodes, a.tasks_per_node, a.gpus_per_node) == (32, 4, 8, 8)   # GPU table: 8 per node
    spec, plan = _plan(tp=2, dp=2)
    a = allocate(spec, LaunchOptions())
    assert (a.nodes, a.tasks_per_node) == (1, 4)                                    # fewer GPUs than a node
    assert allocate(spec, LaunchOptions(gpus_per_node=2)).nodes == 2
    spec, plan = _plan(tp=4, gpus=12)
    with pytest.raises(UserError, match="whole nodes"):
        allocate(spec, LaunchOptions())
    assert allocate(spec, LaunchOptions(gpus_per_node=4, time_min=2941)).time_str == "2-01:01:00"
    with pytest.raises(UserError, match="grace_s"):
        allocate(spec, LaunchOptions(gpus_per_node=4, time_min=2, grace_s=120))
    assert master_port(17) == master_port("17") == master_port("17_3") == 15017
    assert 15000 <= master_port(10**9 + 7) < 35000


def test_submitit_parameters_carry_the_same_directives_as_the_script():
    """The real job (submitit) and the hand script must ask Slurm for the same allocation."""
    from submitit.slurm.slurm import _make_sbatch_string

    flags, opts = CASES["full"]
    spec, plan = _plan(**flags)
    o = LaunchOptions(**opts)
    script = render_sbatch(spec, plan, o)
    submitit_text = _make_sbatch_string(command="true", folder="/x", **executor_parameters(spec, plan, o))

    def directives(text: str) -> dict[str, str]:
        out = {}
        for m in re.finditer(r"^#SBATCH --([a-z-]+)(?:=(.*))?$", text, re.M):
            out[m[1]] = shlex.split(m[2])[0] if m[2] else ""
        return out

    ours, theirs = directives(script), directives(submitit_text)
    assert ours.pop("signal") == "B:USR2@300" and theirs.pop("signal") == "USR2@300"   # documented difference
    assert theirs.pop("time") == "2880" and ours.pop("time") == "2-00:00:00"            # minutes vs D-HH:MM:SS
    theirs.pop("wckey")
    assert ours == theirs


def test_train_command_is_the_contract():
    o = LaunchOptions(name="x", run_root=Path("/r"), steps=5, tiny=True, train_args=("--seed", "7"))
    assert train_argv(o, Path("/r/x")) == ["python3", "-m", "soraplan", "train", "--config", "/r/x/spec.yaml",
                                           "--run-dir", "/r/x", "--resume", "auto", "--steps", "5", "--tiny",
                                           "--seed", "7"]


EVIL = ["a'; touch /tmp/pwned #", "$(id)", "`id`", "x\ny", "a b", '"; id; "']


@pytest.mark.parametrize("value", EVIL)
def test_directive_values_with_shell_or_space_are_rejected(value):
    spec, plan = _plan(tp=2, dp=2)
    for field in ("partition", "account", "qos"):
        with pytest.raises(UserError, match=f"launch.{field}"):
            render_sbatch(spec, plan, LaunchOptions(gpus_per_node=2, **{field: value}))
    with pytest.raises(UserError, match="run_root"):
        render_sbatch(spec, plan, LaunchOptions(gpus_per_node=2, run_root=Path("/tmp") / value))
    with pytest.raises(ValueError, match="not a valid run name"):
        LaunchOptions(name=value)


def test_train_args_and_env_values_are_quoted_and_arrive_verbatim(tmp_path):
    """Run the rendered script's body with stub srun/scontrol: the injected strings arrive as plain argv."""
    canary = tmp_path / "pwned"
    evil = [f"a'; touch {canary} #", f"$(touch {canary})", f"`touch {canary}`", "x\ntouch " + str(canary)]
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "srun").write_text('#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n')
    (stub / "scontrol").write_text("#!/bin/sh\necho n1\n")
    (stub / "fakepy").write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                                 "open(os.environ['ARGV_OUT'], 'w').write(json.dumps([sys.argv[1:], os.environ['EVIL']]))\n")
    for f in stub.iterdir():
        f.chmod(0o755)
    spec, plan = _plan(tp=2, dp=2)
    o = LaunchOptions(name="inj", run_root=tmp_path / "runs", gpus_per_node=2, python=str(stub / "fakepy"),
                      train_args=tuple(evil), env={"EVIL": evil[1]})
    script = tmp_path / "job.sh"
    script.write_text(render_sbatch(spec, plan, o))
    env = dict(os.environ, PATH=f"{stub}:{os.environ['PATH']}", SLURM_JOB_ID="7", SLURM_JOB_NODELIST="n[1-2]",
               ARGV_OUT=str(tmp_path / "argv.json"))
    r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import json

    argv, evil_env = json.loads((tmp_path / "argv.json").read_text())
    assert argv[-len(evil):] == evil and evil_env == evil[1]
    assert not canary.exists()
    assert (tmp_path / "runs" / "inj" / "spec.yaml").read_text().startswith("name: soraplan-6B")


def test_dry_run_cli_prints_the_script_and_records_nothing(tmp_path):
    env = dict(os.environ, SORAPLAN_STATE_DIR=str(tmp_path / "state"))
    r = subprocess.run([sys.executable, "-m", "soraplan", "launch", "--cluster", "slurm", "--tp", "2", "--dp", "2",
                        "--gpus-per-node", "2", "--name", "dry", "--run-root", str(tmp_path), "--dry-run"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("#!/bin/bash") and "#SBATCH --nodes=2" in r.stdout
    assert not (tmp_path / "state").exists() and not (tmp_path / "dry").exists()
    bad = subprocess.run([sys.executable, "-m", "soraplan", "launch", "--cluster", "slurm", "--name", "$(id)",
                          "--dry-run"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: launch.name") and len(bad.stderr.splitlines()) == 1
