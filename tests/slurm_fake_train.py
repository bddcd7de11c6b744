"""A stand-in for `python -m soraplan train` used only by the Slurm plumbing tests (signals, argv, retries).

Records its argv and rank to <run-dir>/argv.<rank>.json, "trains" --steps steps of --step-s seconds each,
appends {"step", "rank", "restart"} lines to <run-dir>/fake_steps.jsonl, and on USR2/TERM writes
<run-dir>/signal.<rank>.<restart> and exits 75 (as train does after checkpointing). When all steps are done
rank 0 writes the `done` marker. The real end-to-end tests run the real `soraplan train`.
"""
import json
import os
import signal
import sys
import time
from pathlib import Path

args = sys.argv[1:]
if args[:3] == ["-m", "soraplan", "train"]:
    args = args[3:]


def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default


run_dir = Path(opt("--run-dir"))
steps = int(opt("--steps", "3"))
step_s = float(os.environ.get("FAKE_STEP_S", "0.2"))
rank = os.environ.get("SLURM_PROCID", "0")
restart = os.environ.get("SLURM_RESTART_COUNT", "0")
env_keys = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "MASTER_ADDR", "MASTER_PORT", "SLURM_JOB_ID",
            "SLURM_RESTART_COUNT", "CUDA_VISIBLE_DEVICES", "PYTHONUNBUFFERED", "CUDA_DEVICE_MAX_CONNECTIONS", "NCCL_DEBUG")
(run_dir / f"argv.{rank}.json").write_text(json.dumps({"argv": sys.argv, "env": {k: os.environ.get(k) for k in env_keys}}))


def on_signal(signum, frame):
    (run_dir / f"signal.{rank}.{restart}").write_text(signal.Signals(signum).name)
    sys.exit(75)


signal.signal(signal.SIGUSR2, on_signal)
signal.signal(signal.SIGTERM, on_signal)
for step in range(steps):
    time.sleep(step_s)
    with open(run_dir / "fake_steps.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "rank": rank, "restart": restart}) + "\n")
    print(json.dumps({"step": step, "rank": int(rank)}), flush=True)
if rank == "0":
    # like a real collective run, rank 0 cannot finish before every rank has started
    world = int(os.environ.get("SLURM_NTASKS", "1"))
    while not all((run_dir / f"argv.{r}.json").exists() for r in range(world)):
        time.sleep(0.05)
    (run_dir / "done").write_text(json.dumps({"step": steps, "steps": steps}))
