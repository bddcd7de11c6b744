"""Carry out `soraplan launch`: plan, render, apply the launch policy to the ledger, submit once.

Flow: Spec + LaunchOptions -> the planner's estimate -> backend.render (pure; also rejects bad input
before anything is recorded) -> --dry-run returns the text (or writes one file per object), --server-dry-run
lets the cluster validate without recording anything, otherwise launch/policy.decide picks create / resume /
replace / refuse from the ledger, the ledger records the run and backend.submit (the backend's only
cluster-touching call, see launch/backends.py) submits it.

Exactly once: everything from the first read of the run in the ledger to the record of its job ids happens
under the run's launch lock (Ledger.run_lock), so two launches of one run never both submit. The backend
opens a submission (Ledger.begin_submit: a token, state "submitting") before it calls the cluster and
records the job ids after; a submission found still open under the lock was cut short (the process was
killed between submit and record), and `reconcile` asks the run's backend to look its token up first:
found, the job ids are recorded (and the policy sees a queued or running run); not found, submitting again
is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from soraplan.planner.errors import UserError
from soraplan.planner.estimate import estimate
from soraplan.planner.spec import Spec
from soraplan.planner.trainable import train_refusal

from .backends import get_backend
from .ledger import Ledger, RunRecord
from .options import LaunchOptions
from .policy import ExistingRun, check_flags, decide, needs_live_state

Outcome = Literal["dry-run", "dry-run-files", "server-dry-run", "submitted"]


@dataclass(frozen=True)
class LaunchResult:
    """What a launch produced, for the CLI to render.

    kind "dry-run": `text` is the exact script / YAML; "dry-run-files": `paths` were written;
    "server-dry-run": the backend printed the server's verdict itself; "submitted": `record` is the
    ledger's record of the run after submission.
    """

    kind: Outcome
    text: str = ""
    paths: tuple[Path, ...] = ()
    record: RunRecord | None = None


def existing_run(book: Ledger, backend: Any, name: str, resume: bool) -> ExistingRun | None:
    """The ledger's record of `name` as the policy sees it; the backend is asked for live state only on --resume.

    Args:
        book: the open ledger.
        backend: the backend module of this launch (launch/backends.py seam).
        name: the run name.
        resume: --resume was given.

    Returns:
        None when the ledger has no run `name`.
    """
    if not book.exists(name):
        return None
    record = book.get(name)
    recorded = ExistingRun(record.name, record.backend, record.state, record.state, tuple(record.job_ids))
    if not needs_live_state(resume, recorded):
        return recorded
    live = backend.status(record).get("state", record.state)
    return ExistingRun(record.name, record.backend, record.state, live, tuple(record.job_ids))


def reconcile(book: Ledger, backend: Any, name: str) -> None:
    """Settle an open submission of run `name` (see the module docstring); no-op when there is none.

    Args:
        book: the open ledger (the caller holds the run's lock).
        backend: the backend module of the run (launch/backends.py seam; must provide `lookup`).
        name: the run name.

    Raises:
        UserError: the backend cannot tell whether the submission went through (the cluster cannot be
            asked); nothing is submitted then.
    """
    if not book.exists(name):
        return
    record = book.get(name)
    sub = record.submission
    if sub is None:
        return
    lookup = getattr(backend, "lookup", None)
    if lookup is None:
        raise UserError(f"run {name!r}: a submission was interrupted and the {record.backend} backend cannot look it "
                        "up; check the cluster, then `soraplan cancel` the run or start it anew with --force")
    found = [str(j) for j in lookup(record)]
    if found:
        book.record_jobs(name, found, f"found on the cluster after an interrupted submission (token {sub.token}): "
                                      f"job {', '.join(found)}")
    else:
        book.close_submission(name, f"interrupted submission (token {sub.token}) not found on the cluster")


def launch_run(spec: Spec, opts: LaunchOptions, ledger_path: Path | str | None = None,
               backend: ModuleType | Any | None = None, preflight: bool = True) -> LaunchResult:
    """Plan, render and (unless a dry run) record and submit one run.

    Args:
        spec: the validated Spec.
        opts: the validated LaunchOptions (launch/options.build_options).
        ledger_path: the ledger file (None: launch/ledger.default_path()).
        backend: the backend module; default the one named by `opts.cluster`.
        preflight: check the request against the cluster first (the backend's `preflight`, launch/preflight.py).

    Returns:
        The LaunchResult to render.

    Raises:
        UserError: contradictory flags, input the renderer rejects, or a launch the policy refuses.
    """
    check_flags(opts.resume, opts.force)
    refusal = train_refusal(spec)          # what `soraplan train` would refuse at start: refuse before submitting
    if refusal:
        raise UserError(f"{refusal} (soraplan train refuses it; nothing was submitted)")
    if backend is None:
        backend = get_backend(opts.cluster)
    plan = estimate(spec, compare=False)
    text = backend.render(spec, plan, opts)
    if opts.dry_run:
        if opts.output_dir is not None and hasattr(backend, "write_dry_run"):
            return LaunchResult("dry-run-files", paths=tuple(backend.write_dry_run(spec, plan, opts)))
        return LaunchResult("dry-run", text=text)
    if preflight and hasattr(backend, "preflight"):  # refuse a job that could never start, before recording it
        backend.preflight(spec, opts)
    if opts.server_dry_run:  # the server validates (dryRun=All); nothing is stored, not even in the ledger
        backend.submit(spec, plan, opts, None, None)
        return LaunchResult("server-dry-run")
    with Ledger(ledger_path) as book, book.run_lock(opts.name):
        if book.exists(opts.name):
            recorded = book.get(opts.name).backend
            reconcile(book, backend if recorded == opts.cluster else get_backend(recorded), opts.name)
        existing = existing_run(book, backend, opts.name, opts.resume)
        decision = decide(opts.name, opts.cluster, opts.resume, opts.force, existing, book.path)
        if decision.action == "refuse":
            raise UserError(decision.reason)
        if decision.action == "resume":
            record = book.get(opts.name)
        else:
            if decision.cancel_old_jobs:  # --force: the old run's jobs must not keep writing into the run dir
                backend.cancel(book.get(opts.name))
            record = book.create(opts.name, opts.cluster, opts.run_dir, spec.model_dump(mode="json"), plan.to_json(),
                                 opts.model_dump(mode="json"), replace=decision.action == "replace")
        backend.submit(spec, plan, opts, book, record)
        return LaunchResult("submitted", record=book.get(opts.name))
