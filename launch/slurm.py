"""The Slurm backend (the seam of launch/backends.py): render, submit, status, logs, cancel.

- `render` is the exact sbatch script (templates/sbatch.sh.tmpl via slurm_script.render_sbatch), for
  `--dry-run` and hand submission.
- `submit` submits the real job through submitit's `SlurmExecutor` with the same allocation, directives,
  environment and train command (`slurm_*` parameters; `--signal=USR2@grace`; checkpoint + requeue on USR2
  through `slurm_job.TrainTask.checkpoint`; `--open-mode=append`, `--requeue`, output `%x_%j.out` in the run
  directory for the batch script and every task). Why submitit for the real job: it owns the requeue-on-signal
  protocol per task (rank 0 requeues, others wait), pickles the exact task, and gives job objects that
  `status` can also use; the rendered script implements the same protocol in bash for people who
  submit by hand.
- `status` asks `squeue`/`scontrol show job` (live, and finished jobs for MinJobAge), then `sacct`.
- exactly once: `submit` opens a submission in the ledger (a token) before sbatch and passes the token as the
  job's `--comment` (`soraplan:<token>`); `lookup` finds a job by that comment (`squeue --states=all`, then
  `sacct`, which reports comments only where slurmdbd stores them: AccountingStoreFlags=job_comment) when
  a launch was killed between sbatch and the ledger's record.
- `logs` prints `<run_dir>/<name>_<latest job id>.out` (a requeue keeps the job id and appends to it;
  `--resume` submits a new job, whose file becomes the right one).
This module is the only one here that runs Slurm commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from soraplan.planner.errors import UserError

from .allocation import allocate
from .preflight import preflight_slurm as preflight  # noqa: F401 - the backend's preflight (launch/launcher.py)
from .slurm_script import FINISHED_MARKER, check_directive, directives, env_for, render_sbatch, spec_yaml, train_argv

ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
          "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "STOPPED"}
STATE_MAP = {"PENDING": "pending", "CONFIGURING": "running", "RUNNING": "running", "COMPLETING": "running",
             "REQUEUED": "requeued", "REQUEUE_FED": "requeued", "REQUEUE_HOLD": "requeued", "SUSPENDED": "suspended",
             "COMPLETED": "completed", "FAILED": "failed", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed",
             "BOOT_FAIL": "failed", "DEADLINE": "timeout", "TIMEOUT": "timeout", "CANCELLED": "cancelled",
             "PREEMPTED": "preempted"}


def render(spec: Any, plan: dict[str, Any], opts: Any) -> str:
    return render_sbatch(spec, plan, opts)


def log_path(run_dir: Path, name: str, job_id: str) -> Path:
    """`%x_%j.out` for one job id."""
    return Path(run_dir) / f"{name}_{job_id}.out"


def executor_parameters(spec: Any, plan: dict[str, Any], opts: Any) -> dict[str, Any]:
    """submitit `update_parameters(**...)` from the same directives as the script (pure)."""
    alloc = allocate(spec, opts)
    d = directives(alloc, opts)
    out_file = str(opts.run_dir / "%x_%j.out")
    params: dict[str, Any] = {
        "job_name": d["job-name"], "nodes": alloc.nodes, "ntasks_per_node": alloc.tasks_per_node,
        "gpus_per_node": alloc.gpus_per_node, "cpus_per_task": alloc.cpus_per_task, "time": alloc.time_min,
        "signal_delay_s": alloc.grace_s, "stderr_to_stdout": True,
        "additional_parameters": {"output": out_file, "error": out_file, "open-mode": "append", "requeue": True},
        # every task's stdout/stderr into the same file (srun: the last --output wins over submitit's own)
        "srun_args": ["--output", out_file, "--error", out_file, "--open-mode=append", "--kill-on-bad-exit=1"],
    }
    if alloc.mem_gib is not None:
        params["mem"] = d["mem"]
    for key in ("partition", "account", "qos"):
        if key in d:
            params[key] = d[key]
    return params


def _run(argv: list[str], check: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check)
    except FileNotFoundError:
        raise UserError(f"slurm: {argv[0]!r} not found on PATH (is this a Slurm login node?)") from None
    except subprocess.CalledProcessError as e:
        raise UserError(f"slurm: {' '.join(argv[:3])} failed: {(e.stderr or e.stdout).strip()[:300]}") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"slurm: {argv[0]!r} did not answer within 60 s (is the controller up?)") from None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


COMMENT_PREFIX = "soraplan:"


def submit(spec: Any, plan: dict[str, Any], opts: Any, ledger: Any, record: Any) -> None:
    """Submit the run once through submitit; record the job id in the ledger.

    The ledger's submission (token) is opened right before sbatch and the token rides along as the job's
    comment, so `lookup` can find the job if this process dies before `record_jobs`.
    """
    import submitit

    from .slurm_job import TrainTask

    run_dir = opts.run_dir
    check_directive("launch.run_root (run directory)", str(run_dir))
    params = executor_parameters(spec, plan, opts)
    env = env_for(opts)
    argv = train_argv(opts, run_dir)
    if opts.force and run_dir.exists():
        # --force starts anew: keep the old run directory (checkpoints, logs) under another name
        aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(aside)
        ledger.set_state(record.name, "created", f"--force: previous run directory moved to {aside}")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "spec.yaml", spec_yaml(spec))
    _write_atomic(run_dir / "sbatch.sh", render_sbatch(spec, plan, opts))  # the hand-submission twin, for reference
    folder = run_dir / "submitit"
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=opts.max_retries, python=opts.python)
    task = TrainTask(argv, str(run_dir), env, opts.max_retries, opts.grace_s, FINISHED_MARKER, opts.debug)
    token = ledger.begin_submit(record.name)
    executor.update_parameters(**params, comment=COMMENT_PREFIX + token)
    try:
        job = executor.submit(task)
    except Exception as e:  # noqa: BLE001 - submitit raises plain Exceptions/FailedJobError on sbatch errors
        # The submission stays open: the next launch looks the token up before it submits again.
        ledger.set_state(record.name, "failed", f"sbatch: {str(e).strip()[:300]}")
        raise UserError(f"slurm: submission failed: {' '.join(str(e).split())[:300]}") from None
    ledger.record_jobs(record.name, [str(job.job_id)])


def lookup(record: Any) -> list[str]:
    """The job ids whose comment carries the open submission's token (empty: nothing was submitted).

    Args:
        record: the run's RunRecord with an open `submission`.

    Returns:
        The job ids found (squeue first: queued, running and recently finished jobs; then sacct).

    Raises:
        UserError: squeue cannot answer (then nobody can tell whether the job exists).
    """
    sub = record.submission
    if sub is None:
        return []
    comment = COMMENT_PREFIX + sub.token
    r = _run(["squeue", "--noheader", "--states=all", "--name", record.name, "--format=%i|%k"])
    if r.returncode != 0:
        raise UserError(f"slurm: cannot tell whether the interrupted submission of run {record.name!r} went through: "
                        f"squeue failed: {' '.join((r.stderr or r.stdout).split())[:300]}")
    found = _with_comment(r.stdout, comment)
    if not found:
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(sub.started - 60))
        try:
            acct = _run(["sacct", "--noheader", "--allocations", "--parsable2", "--format=JobID,Comment",
                         "--name", record.name, "--starttime", start])
        except UserError:   # no sacct on PATH: squeue's answer stands
            return []
        if acct.returncode == 0:
            found = _with_comment(acct.stdout, comment)
    return found


def _with_comment(text: str, comment: str) -> list[str]:
    """Job ids from `JOBID|COMMENT` lines whose comment is exactly `comment` (in order, no repeats)."""
    out: list[str] = []
    for line in text.splitlines():
        job_id, sep, value = line.partition("|")
        if sep and value.strip() == comment and job_id.strip() and job_id.strip() not in out:
            out.append(job_id.strip())
    return out


def _scontrol_job(job_id: str) -> dict[str, str]:
    r = _run(["scontrol", "show", "job", "-o", str(job_id)])
    if r.returncode != 0 or not r.stdout.strip():
        return {}
    kv: dict[str, str] = {}
    for tok in r.stdout.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            kv.setdefault(k, v)
    return kv


def _sacct_state(job_id: str) -> str | None:
    r = _run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", str(job_id)])
    for line in r.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 2 and parts[0] == str(job_id):
            return parts[1].split()[0]
    return None


def job_state(job_id: str) -> dict[str, str]:
    """Slurm's view of one job: state, reason, restarts, nodes (scontrol, else sacct)."""
    kv = _scontrol_job(job_id)
    if kv:
        return {"slurm_state": kv.get("JobState", "UNKNOWN"), "reason": kv.get("Reason", ""),
                "restarts": kv.get("Restarts", "0"), "nodes": kv.get("NodeList", "")}
    state = _sacct_state(job_id)
    return {"slurm_state": state or "UNKNOWN", "reason": "", "restarts": "", "nodes": ""}


def status(record: Any) -> dict[str, Any]:
    if not record.job_ids:
        if getattr(record, "submission", None) is not None:
            return {"state": record.state, "detail": "submission not yet recorded (in progress, or interrupted: "
                                                     "the next `soraplan launch` of this run settles it)"}
        return {"state": record.state, "detail": "not submitted"}
    job_id = record.job_ids[-1]
    js = job_state(job_id)
    slurm_state = js["slurm_state"]
    state = STATE_MAP.get(slurm_state, slurm_state.lower())
    finished = (Path(record.run_dir) / FINISHED_MARKER).exists()
    if finished and slurm_state not in ACTIVE:
        state = "completed"
    elif state == "completed" and not finished:
        state = "failed"  # the job ended without the train's finished marker
    detail = f"job {job_id} {slurm_state}"
    if js["restarts"] not in ("", "0"):
        detail += f", requeued {js['restarts']}x"
    if js["reason"] not in ("", "None"):
        detail += f" ({js['reason']})"
    return {"state": state, "detail": detail, "job_id": job_id, **js}


def logs(record: Any, follow: bool) -> None:
    if not record.job_ids:
        raise UserError(f"run {record.name!r} has no Slurm job yet")
    path = log_path(record.run_dir, record.name, record.job_ids[-1])
    pos = 0
    while True:
        if path.exists():
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read()
                pos = f.tell()
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
        elif not follow:
            raise UserError(f"no log yet for run {record.name!r}: {path} (job pending?)")
        if not follow:
            return
        if job_state(record.job_ids[-1])["slurm_state"] not in ACTIVE:
            follow = False  # one last read picks up the tail
            continue
        time.sleep(1.0)


def cancel(record: Any) -> None:
    if not record.job_ids:
        return
    r = _run(["scancel", *record.job_ids])
    if r.returncode != 0 and not any(m in r.stderr for m in ("Invalid job id", "already completing or completed")):
        raise UserError(f"slurm: scancel failed: {r.stderr.strip()[:300]}")
