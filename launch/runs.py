"""`soraplan status | logs | cancel`: a run's record in the ledger plus what its backend reports now.

Each function opens the ledger, asks the run's own backend (launch/backends.py seam) and keeps the ledger
in step with what the cluster said.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soraplan.planner.errors import UserError

from .backends import get_backend
from .ledger import Ledger


@dataclass(frozen=True)
class RunStatus:
    """One row of `soraplan status`: the live state when the backend knows it, else the ledger's."""

    name: str
    backend: str
    state: str
    detail: Any
    job_ids: tuple[str, ...]
    run_dir: str
    explanation: str = ""       # a pending job's reason in words, with what to do (not in the JSON)

    def to_json(self) -> dict[str, Any]:
        """The `soraplan status --json` row (keys in this order)."""
        return {"name": self.name, "backend": self.backend, "state": self.state, "detail": self.detail,
                "job_ids": list(self.job_ids), "run_dir": self.run_dir}


def run_statuses(run: str | None = None, ledger_path: Path | str | None = None) -> list[RunStatus]:
    """The state of one run (or every run, oldest first), recording state changes in the ledger.

    Args:
        run: the run name; None for every run in the ledger.
        ledger_path: the ledger file (None: the default location).

    Returns:
        One RunStatus per run. Raises UserError when `run` is not in the ledger.
    """
    rows = []
    with Ledger(ledger_path) as book:
        records = [book.get(run)] if run else list(book.all())
        for r in records:
            live = get_backend(r.backend).status(r)
            if live.get("state") and live["state"] != r.state:
                book.set_state(r.name, live["state"], str(live.get("detail", "")))
            rows.append(RunStatus(r.name, r.backend, live.get("state", r.state), live.get("detail", ""),
                                  tuple(r.job_ids), str(r.run_dir), explain_reason(live.get("reason"))))
    return rows


# Slurm's pending-job reason codes (squeue %r / scontrol JobState Reason) -> (what it means, what to do).
PENDING_REASONS: dict[str, tuple[str, str]] = {
    "PartitionConfig": ("the request exceeds what the partition allows (CPUs, memory, GPUs, nodes or time per job)",
                        "cancel and relaunch with a smaller request; `scontrol show partition -o` shows the limits"),
    "Resources": ("the job waits for enough free nodes, GPUs, CPUs or memory", "wait, or ask for fewer resources"),
    "Priority": ("jobs with higher priority are ahead in the queue", "wait; `sprio -j JOB` shows the priority"),
    "ReqNodeNotAvail": ("a node the job needs is down, drained or reserved",
                        "wait, or relaunch on another partition; `sinfo -R` shows why nodes are unavailable"),
    "QOSMaxJobsPerUserLimit": ("you already run the most jobs your QOS allows", "wait for one of your jobs to end"),
    "QOSMaxGRESPerUser": ("your running jobs already use the most GPUs your QOS allows", "wait, or cancel a job"),
    "QOSGrpGRES": ("the QOS's GPUs are all in use", "wait, or use another --qos"),
    "AssocGrpGRES": ("your account's GPU limit (GrpTRES gres/gpu) is used up by running jobs",
                     "wait, use another --account, or ask the admins to raise the limit"),
    "AssocGrpCPULimit": ("your account's CPU limit is used up by running jobs", "wait, or use another --account"),
    "AssocMaxJobsLimit": ("your account already runs the most jobs it may", "wait for one of its jobs to end"),
    "AssocGrpGRESMinutes": ("your account's GPU-minutes budget is spent", "ask the admins, or use another --account"),
    "Dependency": ("the job waits for another job it depends on", "wait; `scontrol show job JOB` names the dependency"),
    "DependencyNeverSatisfied": ("a job this one depends on failed, so it will never start", "cancel it"),
    "BeginTime": ("the job was submitted with a start time in the future", "wait, or `scontrol update job JOB StartTime=now`"),
    "JobHeldUser": ("you held the job", "`scontrol release JOB`"),
    "JobHeldAdmin": ("an administrator held the job", "ask the admins"),
    "PartitionTimeLimit": ("the time limit is longer than the partition allows", "relaunch with a smaller --time-min"),
    "PartitionNodeLimit": ("more nodes than the partition allows per job", "relaunch with fewer GPUs or another partition"),
    "PartitionDown": ("the partition is down", "wait, or use another --partition"),
    "PartitionInactive": ("the partition does not accept jobs now", "use another --partition"),
    "InvalidAccount": ("the account is not valid for you", "relaunch with a valid --account"),
    "InvalidQOS": ("the QOS is not valid for you", "relaunch with a valid --qos"),
    "Reservation": ("the job waits for its reservation to start", "wait"),
    "NodeDown": ("a node the job needs is down", "wait, or ask the admins"),
    "BadConstraints": ("no node satisfies the job's constraints", "cancel and relaunch with other constraints"),
    "Licenses": ("the job waits for a license", "wait"),
    "launch_failed_requeued_held": ("the job failed to launch and was held", "check the log, then `scontrol release JOB`"),
}


def explain_reason(reason: Any) -> str:
    """Slurm's reason code in words and what to do ('' for no reason or "None").

    Args:
        reason: the code, e.g. "PartitionConfig" (scontrol may append details after a comma or in brackets).

    Returns:
        "<meaning>; <what to do>", the code itself when unknown, or "".
    """
    code = str(reason or "").split(",")[0].split("(")[0].strip()
    if code in ("", "None"):
        return ""
    if code in PENDING_REASONS:
        meaning, todo = PENDING_REASONS[code]
        return f"{code}: {meaning}; {todo}"
    return f"{code}: see `man squeue` (JOB REASON CODES)"


def print_logs(run: str, follow: bool = False, ledger_path: Path | str | None = None, rank: int | None = None,
               all_pods: bool = False) -> None:
    """Print the run's current log to stdout (`follow`: keep printing until the run ends).

    Args:
        run: the run name.
        follow: keep printing as the log grows.
        ledger_path: the ledger file (None: the default location).
        rank: the node rank whose log to print (backends with one log per node).
        all_pods: every node's log (backends with one log per node).
    """
    with Ledger(ledger_path) as book:
        r = book.get(run)
    backend = get_backend(r.backend)
    if rank is None and not all_pods:
        backend.logs(r, follow)
        return
    import inspect

    if "rank" not in inspect.signature(backend.logs).parameters:
        raise UserError(f"logs --rank/--all: the {r.backend} backend keeps one log per run; use `soraplan logs {run}`")
    backend.logs(r, follow, rank=rank, all_pods=all_pods)


def cancel_run(run: str, ledger_path: Path | str | None = None) -> None:
    """Cancel the run's jobs on its backend and record the run as cancelled.

    Args:
        run: the run name.
        ledger_path: the ledger file (None: the default location).
    """
    with Ledger(ledger_path) as book:
        r = book.get(run)
        get_backend(r.backend).cancel(r)
        book.set_state(run, "cancelled", "by soraplan cancel")
