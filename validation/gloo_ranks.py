"""Run one measurement module as `world` gloo processes on this machine and collect each rank's results.

The module is started as `python -m <module> <specs.json> <out_dir>` once per rank (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT set, one OpenMP thread each) and writes `<out_dir>/rank<R>.json`: one result
per spec. Used by the TP/CP (`measure_tp`), DP (`measure_dp`) and PP (`measure_pp`) rows of validate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from soraplan.models.parallel import free_port


def run_ranks(module: str, specs: list, world: int, timeout_s: float, what: str) -> list[list[dict[str, Any]]]:
    """Start `world` processes of `module` over `specs` and wait for them.

    Args:
        module: the measurement module (its `__main__` takes the specs file and the output folder).
        specs: validated Specs that share the world size.
        world: the number of processes.
        timeout_s: how long each rank may run.
        what: the measurement's name in the error ("TP", "DP", "PP").
    Returns:
        Per spec, the list of rank results (rank 0 first).
    Raises:
        RuntimeError: a rank failed or timed out; the message holds the tail of its log.
    """
    with tempfile.TemporaryDirectory(prefix=f"soraplan-{what.lower()}-") as tmp:
        spec_path = Path(tmp) / "specs.json"
        spec_path.write_text(json.dumps([s.model_dump(mode="json") for s in specs]))
        port = str(free_port())
        procs = []
        for rank in range(world):
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1")
            log = open(Path(tmp) / f"rank{rank}.log", "w")
            procs.append((subprocess.Popen([sys.executable, "-m", module, str(spec_path), tmp],
                                           env=env, stdout=log, stderr=subprocess.STDOUT), log))
        failed = []
        for rank, (p, log) in enumerate(procs):
            try:
                rc = p.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = -9
            log.close()
            if rc != 0:
                failed.append(rank)
        if failed:
            for p, _ in procs:
                if p.poll() is None:
                    p.kill()
            tail = (Path(tmp) / f"rank{failed[0]}.log").read_text()[-2000:]
            raise RuntimeError(f"{what} measurement: rank {failed[0]} failed:\n{tail}")
        per_rank = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(world)]
        return [[per_rank[r][i] for r in range(world)] for i in range(len(specs))]


def write_rank(out_dir: str, rank: int, results: list[dict[str, Any]]) -> None:
    """A worker's results as `<out_dir>/rank<R>.json` (a temp name first, renamed when complete).

    Args:
        out_dir: the folder `run_ranks` passed to the worker.
        rank: this process's global rank.
        results: one result per spec.
    """
    tmp = Path(out_dir) / f".rank{rank}.json"
    tmp.write_text(json.dumps(results))
    tmp.rename(Path(out_dir) / f"rank{rank}.json")
