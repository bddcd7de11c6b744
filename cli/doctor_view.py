"""The lines of `soraplan doctor`: one per check, "ok" or "missing", what was found, and the fix."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from .table_view import console


def render(results: list[Any], required: list[str], console_: Console | None = None) -> None:
    """Print one line per check (wrapped to the terminal) and a verdict on the required ones.

    Args:
        results: the doctor's Check rows (name, ok, detail, fix).
        required: the names given with --check.
        console_: print here (default: stdout).
    """
    c = console_ or console()
    width = max(len(r.name) for r in results)
    for r in results:
        mark = "[green]ok[/green]     " if r.ok else ("[bold red]MISSING[/bold red]" if r.name in required
                                                     else "[yellow]missing[/yellow]")
        fix = f"  [bold]fix:[/bold] {escape(r.fix)}" if r.fix and not r.ok else ""
        c.print(f"{mark} {r.name:<{width}}  {escape(r.detail)}{fix}", highlight=False)
    failed = [r.name for r in results if r.name in required and not r.ok]
    if required:
        c.print(f"required ({', '.join(required)}): " + (f"[bold red]{', '.join(failed)} missing[/bold red]"
                                                         if failed else "[green]all present[/green]"))
