"""The backend seam: `soraplan launch/status/logs/cancel` talk to a backend module through these names.

A backend module (soraplan.launch.slurm, soraplan.launch.k8s) provides:
  render(spec, plan, opts) -> str                   pure: the exact script / multi-document YAML (--dry-run)
  submit(spec, plan, opts, ledger, record) -> None  the ONE place that creates jobs: opens a submission in the
                                                    ledger (ledger.begin_submit -> token) right before the
                                                    cluster call, attaches the token to the job, then records
                                                    the job ids (ledger.record_jobs)
  lookup(record) -> list[str]                       the job ids carrying record.submission's token (exactly-
                                                    once reconciliation after a crash; launch/launcher.py)
  status(record) -> dict                            {"state": str, "detail": str, ...} read from the cluster
  logs(record, follow: bool) -> None                prints the right log to stdout
  cancel(record) -> None
"""

from __future__ import annotations

import importlib
from types import ModuleType

from soraplan.planner.errors import UserError

BACKENDS = {"slurm": "soraplan.launch.slurm", "k8s": "soraplan.launch.k8s"}


def get_backend(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise UserError(f"--cluster: unknown cluster {name!r}; known: {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])
