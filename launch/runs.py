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
                                  tuple(r.job_ids), str(r.run_dir)))
    return rows


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
