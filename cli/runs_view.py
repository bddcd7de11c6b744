"""The table of `soraplan status`: one row per run, then each pending job's reason in words."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

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
        t.add_row(escape(x.name), x.backend, x.state, ", ".join(x.job_ids), escape(str(x.detail)), escape(x.run_dir))
    c.print(t)
    for x in rows:
        if getattr(x, "explanation", ""):
            c.print(f"[bold]{escape(x.name)}[/bold] {x.state}: {escape(x.explanation)}", highlight=False)
