"""The Slurm preflight of `soraplan launch` on a REAL local Slurm cluster (tests/slurm_cluster.py: 2 nodes x
8 CPUs x 2 GPUs, 8000 MiB, partition debug): the facts parsed from `scontrol`, jobs that could never start
refused before anything is recorded (naming the resource), a job that fits submitted, `--no-preflight`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from slurm_cluster import SlurmCluster, why_not_startable

pytestmark = pytest.mark.slurm

HERE = Path(__file__).resolve().parent
LAYOUT = ["--tiny", "--tp", "2", "--dp", "2", "--gpus-per-node", "2"]


@pytest.fixture(scope="module")
def cluster():
    why = why_not_startable()
    if why:
        if os.environ.get("SORAPLAN_REQUIRE_SLURM"):
            pytest.fail(f"Slurm is required here (SORAPLAN_REQUIRE_SLURM) but cannot start: {why}")
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="soraplan-pre-"))
    c = SlurmCluster(root)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cli(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("pre-runs")
    fakepy = root / "fakepy"     # `python -m soraplan train` -> the quick stand-in
    fakepy.write_text("#!/bin/sh\n"
                      f"if [ \"$1\" = -m ] && [ \"$2\" = soraplan ]; then exec {sys.executable} "
                      f"{HERE / 'slurm_fake_train.py'} \"$@\"; fi\nexec {sys.executable} \"$@\"\n")
    fakepy.chmod(0o755)

    def run(*args: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "soraplan", *args]
        if args[0] == "launch":
            argv += ["--cluster", "slurm", "--run-root", str(root / "runs"), "--python", str(fakepy)]
        argv += ["--ledger", str(root / "ledger.sqlite")]
        return subprocess.run(argv, capture_output=True, text=True, env=dict(cluster.env, COLUMNS="200"), timeout=300)

    return run


def test_facts_parsed_from_the_real_scontrol(cluster, monkeypatch):
    from soraplan.launch.preflight import slurm_facts

    for k, v in cluster.env.items():
        monkeypatch.setenv(k, v)
    parts, nodes = slurm_facts()
    assert [(p.name, p.default, p.max_time_min) for p in parts] == [("debug", True, None)]
    assert sorted((n.name, n.cpus, n.gpus, n.mem_mib, n.partitions) for n in nodes) == [
        ("n1", 8, 2, 8000, ("debug",)), ("n2", 8, 2, 8000, ("debug",))]


@pytest.mark.parametrize("extra, needle", [
    (["--cpus-per-task", "8"], "--cpus-per-task 8 x 2 tasks per node = 16 CPUs > 8 CPUs on every node of partition debug"),
    (["--cpus-per-task", "2", "--mem-gib", "16"], "--mem-gib 16 = 16,384 MiB > 8,000 MiB on every node of partition debug"),
    (["--cpus-per-task", "2", "--partition", "gpu-long"], "--partition gpu-long: no such partition (partitions: debug)"),
    (["--cpus-per-task", "2", "--dp", "4"], "the job needs 4 nodes with 2 GPUs, 4 CPUs each; partition debug has 2"),
])
def test_a_job_that_could_never_start_is_refused(cli, extra, needle):
    name = f"never-{abs(hash(needle)) % 10_000}"
    r = cli("launch", "--name", name, *LAYOUT, *extra)
    assert r.returncode == 2, r.stdout + r.stderr
    assert needle in r.stderr and "--no-preflight" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert cli("status", name).returncode == 2           # nothing was recorded


def test_a_job_that_fits_is_submitted_and_no_preflight_skips_the_check(cli, cluster):
    r = cli("launch", "--name", "fits", *LAYOUT, "--cpus-per-task", "2", "--steps", "2", "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["job_ids"] and rec["soraplan_version"]
    cli("cancel", "fits")
    # without the check the request reaches sbatch: refused there (or left pending), not by the preflight
    r = cli("launch", "--name", "unchecked", *LAYOUT, "--cpus-per-task", "8", "--no-preflight")
    assert "CPUs on every node" not in r.stderr
    if r.returncode == 0:
        out = cli("status", "unchecked").stdout
        cli("cancel", "unchecked")
        assert "pending" in out and ("PartitionConfig" in out or "Resources" in out), out
    else:
        assert "slurm: submission failed" in r.stderr, r.stderr
