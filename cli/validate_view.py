"""The table of `soraplan validate`: measured vs predicted per configuration, pass/fail against the tolerance.

A `table_view.Grid`: it wraps to the terminal (or `$COLUMNS`, 80 on a pipe) and turns vertical when the six
columns cannot fit, so no configuration name or number is cut.
"""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console

from .table_view import Grid, console


def fmt(x: Optional[float], unit: str) -> str:
    """A measured or predicted value with its unit ('-' when absent)."""
    if x is None:
        return "-"
    if unit == "B" and abs(x) >= 1024**2:
        return f"{x / 1024**2:,.2f} MiB" if abs(x) < 1024**3 else f"{x / 1024**3:,.3f} GiB"
    if unit == "FLOP" and abs(x) >= 1e9:
        return f"{x / 1e12:,.4f} TFLOP" if abs(x) >= 1e12 else f"{x / 1e9:,.4f} GFLOP"
    if unit in ("s",):
        return f"{x:.3f} s"
    if unit == "TFLOP/s":
        return f"{x:.1f} TFLOP/s"
    return f"{x:,.0f}" + (f" {unit}" if unit not in ("params",) else "")


def render_table(rows: list[Any], errors: list[dict], title: str, console_: Console | None = None) -> None:
    """Print the comparison rows, the failed cases and the one-line verdict.

    Args:
        rows: the validation rows (`config`, `quantity`, `measured`, `predicted`, `unit`, `error`, `tolerance`, `ok`).
        errors: cases that crashed ({"config", "error"}).
        title: the table's title.
        console_: print here (default: stdout).
    """
    c = console_ or console()
    table = Grid(title, "configuration", "quantity", ">measured", ">predicted", ">error %", "result")
    last = None
    for r in rows:
        err = r.error
        if r.tolerance is None:
            result = "[dim]info[/dim]"
            err = None if r.predicted is None else err
        else:
            tol = "exact" if r.tolerance == 0 else f"<={r.tolerance:.0%}"
            result = f"[green]pass[/green] ({tol})" if r.ok else f"[bold red]FAIL[/bold red] ({tol})"
        table.add_row(r.config if r.config != last else "", r.quantity, fmt(r.measured, r.unit),
                      fmt(r.predicted, r.unit), "-" if err is None else f"{100 * err:+.4f}", result)
        last = r.config
    c.print(table)
    for e in errors:
        c.print(f"[bold red]FAIL[/bold red] {e['config']}: {e['error']}", highlight=False)
    failed = sum(1 for r in rows if not r.ok) + len(errors)
    compared = sum(1 for r in rows if r.tolerance is not None)
    c.print(f"{compared} comparisons, {failed} failed" + ("" if failed else " - the planner matches the model"))
