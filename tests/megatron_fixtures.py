"""Session fixtures for the Megatron model tests: one process group per pytest run (world 1, gloo),
tiny specs, and a helper that runs a module under torchrun as a subprocess (multi-rank tests)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from soraplan.models.parallel import free_port  # noqa: F401  (used by the tests that launch ranks themselves)
from soraplan.models.tiny import tiny_flags


@pytest.fixture(scope="session")
def megatron_pg():
    """torch.distributed (1-process gloo) + megatron parallel_state with tp=pp=cp=1, once per session."""
    from soraplan.models import parallel
    from soraplan.models.quiet import quiet_megatron

    quiet_megatron()

    parallel.initialize(tp=1)
    yield parallel
    parallel.destroy()


def tiny_spec(**flags):
    """The tiny model (soraplan.models.tiny.TINY_FLAGS) with `flags` applied, as a Spec."""
    from soraplan.planner.config import build_spec

    return build_spec(flags=tiny_flags(**flags))


def check_rows(module: str, nproc: int = 2) -> list[dict]:
    """Run one of soraplan.validation's equivalence checks (tp_check, pp_check, cp_check) under torchrun and
    return its JSON rows (one per case, printed by rank 0); the check process must exit 0."""
    import importlib
    import json

    r = torchrun(nproc, ["-m", f"soraplan.validation.{module}"])
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(rows) == len(importlib.import_module(f"soraplan.validation.{module}").CASES)
    return rows


def torchrun(nproc: int, args: list[str], timeout_s: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """python -m torch.distributed.run --standalone --nproc-per-node N <args> (captured; OMP 1 thread per
    rank; --standalone lets torchrun pick a free rendezvous port, no race with other processes)."""
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS"):
        e.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=e)
