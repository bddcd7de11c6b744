"""Launch policy: what `soraplan launch` does with a run name, given the ledger and --resume / --force.

`decide` is pure: from the flags and the ledger's record of the run (None when the name is free) it returns
one `Decision`:

    create   the name is free: record the run and submit it
    resume   --resume on a run that is neither finished nor active: submit it again under the same record
             (training continues from its checkpoint)
    replace  --force on an existing run: record it anew (cancelling the old jobs first when they run on
             the same backend) and submit
    refuse   nothing is recorded or submitted; `reason` is the one line the user sees

A run in state "submitting" has an open submission (launch/ledger.py); the launcher settles it against the
cluster before deciding (launcher.reconcile), so `decide` refuses it outright as a safety net.

Every state x flag combination is tabled in tests/test_launch_policy.py. Carrying a decision out
(ledger writes, the backend's submit seam) is launch/launcher.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from soraplan.planner.errors import UserError

# A run in one of these states has jobs queued or running: --resume does not submit it a second time.
ACTIVE_STATES = ("submitted", "pending", "running", "requeued", "suspended")
# A submission of the run was begun and not yet recorded (launch/ledger.py, Ledger.begin_submit).
SUBMITTING = "submitting"

Action = Literal["create", "resume", "replace", "refuse"]


@dataclass(frozen=True)
class ExistingRun:
    """What the ledger (and, for --resume, the backend) knows about a run name that is already taken."""

    name: str
    backend: str                 # the backend the run was launched on ("slurm" | "k8s")
    state: str                   # the state recorded in the ledger
    live_state: str              # the backend's state now; equals `state` when the run has no jobs
    job_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The outcome of `decide`: an action, why (for "refuse") and whether old jobs are cancelled first."""

    action: Action
    reason: str = ""
    cancel_old_jobs: bool = False


def check_flags(resume: bool, force: bool) -> None:
    """Refuse contradictory flags before anything is rendered or recorded.

    Args:
        resume: --resume was given.
        force: --force was given.

    Raises:
        UserError: both were given.
    """
    if resume and force:
        raise UserError("--resume and --force exclude each other")


def needs_live_state(resume: bool, recorded: ExistingRun | None) -> bool:
    """Whether `decide` reads `live_state`: only --resume on a run that has jobs asks the backend."""
    return resume and recorded is not None and bool(recorded.job_ids)


def decide(name: str, cluster: str, resume: bool, force: bool, existing: ExistingRun | None,
           ledger_path: Path | str) -> Decision:
    """What to do with run `name` on `cluster`.

    Args:
        name: the run name (LaunchOptions.name).
        cluster: the backend this launch targets ("slurm" | "k8s").
        resume: --resume (continue an existing run).
        force: --force (start an existing run name anew).
        existing: the ledger's record of `name`, or None when the name is free. `live_state` is read only
            when `needs_live_state` says so.
        ledger_path: the ledger file, named in the refusal for a missing run.

    Returns:
        The Decision; "refuse" carries the user-facing reason.
    """
    if resume and force:
        return Decision("refuse", "--resume and --force exclude each other")
    if existing is None:
        if resume:
            return Decision("refuse", f"--resume: no run named {name!r} in the ledger {ledger_path}")
        return Decision("create")
    if existing.state == SUBMITTING:
        return Decision("refuse", f"run {name!r} is being submitted (its submission is not yet settled); "
                                  "not submitting it twice")
    if resume:
        live = existing.live_state if existing.job_ids else existing.state
        if "completed" in (existing.state, live):
            return Decision("refuse", f"run {name!r} has completed; a finished run is never restarted (use --force)")
        if live in ACTIVE_STATES:
            return Decision("refuse", f"run {name!r} is still {live} (jobs {', '.join(existing.job_ids)}); "
                                      "not submitting it twice (soraplan cancel it first)")
        return Decision("resume")
    if not force:
        return Decision("refuse", f"run {name!r} exists already; use --resume to continue it or --force to start it anew")
    return Decision("replace", cancel_old_jobs=bool(existing.job_ids) and existing.backend == cluster)
