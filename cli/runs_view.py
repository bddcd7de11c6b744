"""The table of `soraplan status`: one row per run, then each pending job's reason in words."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from .common import markup_literal
from .table_view import Grid, console


def render_status(rows: list[Any], console_: Console | None = None) -> None:
    """Print the runs (launch/runs.RunStatus rows) and what their pending reasons mean.

    Args:
        rows: the RunStatus rows.
        console_: print here (default: stdout).
    """
    c = console_ or console()
    t = Grid("", "run", "backend", "state", "jobs", "detail", "run dir")
    for x in rows:
        t.add_row(*(markup_literal(v) for v in (x.name, x.backend, x.state, ", ".join(x.job_ids), x.detail, x.run_dir)))
    c.print(t)
    for x in rows:
        if getattr(x, "explanation", ""):
            c.print(f"[bold]{markup_literal(x.name)}[/bold] {x.state}: {markup_literal(x.explanation)}", highlight=False)
