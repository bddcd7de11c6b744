"""The backend seam: `soraplan launch/status/logs/cancel` talk to a backend module through these names.

A backend module (soraplan.launch.slurm, soraplan.launch.k8s) provides:
  render(spec, plan, opts) -> str                   pure: the exact script / multi-document YAML (--dry-run)
  submit(spec, plan, opts, ledger, record) -> None  the ONE place that touches the cluster; records job ids
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
