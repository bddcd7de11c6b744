"""What each Slurm task runs under submitit: `soraplan train` as a child process, plus preemption handling.

submitit starts one copy of `TrainTask` per task (`srun`, one task per GPU). Each copy sets MASTER_ADDR (first
host of `scontrol show hostnames "$SLURM_JOB_NODELIST"`) and MASTER_PORT (job-id derived), runs the train
command and waits. Signals:
- `USR2` (Slurm's `--signal=USR2@grace` before the time limit, or a preemption notice): every task forwards
  it to its train child, which checkpoints and exits. On global rank 0 submitit then calls `checkpoint()`:
  the handler runs only after the child has exited (i.e. after train's collective checkpoint; never inside
  the signal handler, where waiting on the child would deadlock), then `checkpoint()` returns a resubmission (the same TrainTask: train's
  `--resume auto` picks the latest complete checkpoint) while `SLURM_RESTART_COUNT < max_retries` and the run
  has not finished; submitit then `scontrol requeue`s the job (same job id).
- `SIGTERM` (`scontrol requeue`, `scancel`, preemption with GraceTime): forwarded too; train checkpoints on it;
  Slurm itself requeues or ends the job.
A run with the finished marker is never restarted: `__call__` returns at once and `checkpoint()` returns None.
Train's exit codes (models/trainer.py): 0 finished, 75 stopped by a signal after a checkpoint, else failure
(raised here, so the job ends FAILED; `soraplan launch --resume` resubmits it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from .allocation import master_port


def first_host(nodelist: str) -> str:
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def rendezvous_env(environ: dict[str, str]) -> dict[str, str]:
    """MASTER_ADDR / MASTER_PORT for this job (kept if the user set them)."""
    out = {}
    if "MASTER_ADDR" not in environ:
        out["MASTER_ADDR"] = first_host(environ["SLURM_JOB_NODELIST"])
    if "MASTER_PORT" not in environ:
        out["MASTER_PORT"] = str(master_port(environ["SLURM_JOB_ID"]))
    return out


def write_debug_bundle(run_dir: Path, environ: dict[str, str]) -> None:
    """--debug: env, job and GPU/network facts, one file per node (written by local rank 0)."""
    d = run_dir / "debug" / environ.get("SLURM_JOB_ID", "nojob")
    d.mkdir(parents=True, exist_ok=True)
    lines = [f"{k}={v}" for k, v in sorted(environ.items())]
    for cmd in (["scontrol", "show", "job", environ.get("SLURM_JOB_ID", "")], ["nvidia-smi", "topo", "-m"],
                ["ip", "-br", "addr"]):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            lines += [f"$ {' '.join(cmd)}", r.stdout, r.stderr]
        except (OSError, subprocess.SubprocessError) as e:
            lines += [f"$ {' '.join(cmd)}", f"unavailable: {e}"]
    node = environ.get("SLURM_NODEID", "0")
    (d / f"node-{node}-{os.uname().nodename}.txt").write_text("\n".join(lines))


class TrainTask:
    """Picklable callable for submitit (has `checkpoint`, so submitit requeues it on USR2)."""

    def __init__(self, argv: list[str], run_dir: str, env: dict[str, str], max_retries: int, grace_s: int,
                 finished_marker: str, debug: bool = False):
        self.argv, self.run_dir, self.env = list(argv), str(run_dir), dict(env)
        self.max_retries, self.grace_s, self.finished_marker, self.debug = max_retries, grace_s, finished_marker, debug
        self._proc: subprocess.Popen | None = None
        self._signalled: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_proc"], state["_signalled"] = None, None
        return state

    @property
    def finished(self) -> bool:
        return (Path(self.run_dir) / self.finished_marker).exists()

    def __call__(self) -> dict[str, Any]:
        if self.finished:
            print(f"soraplan: run already finished ({self.run_dir}/{self.finished_marker}); nothing to do", flush=True)
            return {"finished": True, "ran": False}
        environ = dict(os.environ)
        env = environ | self.env | rendezvous_env(environ)
        rank, restarts = env.get("SLURM_PROCID", "0"), env.get("SLURM_RESTART_COUNT", "0")
        if rank == "0":
            print(f"soraplan: job {env.get('SLURM_JOB_ID')} restart {restarts}/{self.max_retries} nodes "
                  f"{env.get('SLURM_JOB_NODELIST')} master {env['MASTER_ADDR']}:{env['MASTER_PORT']}", flush=True)
        if self.debug and env.get("SLURM_LOCALID", "0") == "0":
            write_debug_bundle(Path(self.run_dir), env)
        self._proc = subprocess.Popen(self.argv, env=env)
        previous: dict[int, Any] = {s: self._forward(s) for s in (signal.SIGUSR2, signal.SIGTERM)}
        rc = self._proc.wait()
        if rc == 0:  # train's contract: 0 = reached --steps (rank 0 writes the done marker, maybe after us)
            return {"finished": True, "ran": True, "rank": rank}
        if self._signalled is not None:
            # The child has checkpointed and exited; now (outside the signal handler) let submitit's USR2
            # handler run: on rank 0 it calls checkpoint() and requeues the job, elsewhere it only logs.
            handler = previous[self._signalled]
            if callable(handler):
                handler(self._signalled, None)
            time.sleep(self.grace_s)  # wait to be requeued / killed rather than report the task as done
        raise RuntimeError(f"soraplan train exited with {rc} (rank {rank}) before finishing; see {self.run_dir}")

    def _forward(self, signum: int) -> Any:
        """Install a handler that only records `signum` and forwards it to the train child; return the old one."""
        previous = signal.getsignal(signum)

        def handler(s: int, frame: Any) -> None:
            self._signalled = s
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(s)

        signal.signal(signum, handler)
        return previous

    def checkpoint(self) -> Any:
        """Rank 0 on USR2: let train finish its checkpoint, then requeue unless finished or out of retries."""
        import submitit

        deadline = time.monotonic() + max(self.grace_s - 15, 5)
        while self._proc is not None and self._proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.finished:
            print("soraplan: run finished; not requeueing", flush=True)
            return None
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if restarts >= self.max_retries:
            print(f"soraplan: retries exhausted ({restarts}/{self.max_retries}); not requeueing", flush=True)
            return None
        print(f"soraplan: requeueing (restart {restarts + 1}/{self.max_retries})", flush=True)
        return submitit.helpers.DelayedSubmission(TrainTask(self.argv, self.run_dir, self.env, self.max_retries,
                                                            self.grace_s, self.finished_marker, self.debug))
