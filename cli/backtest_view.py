"""The rich tables of `soraplan backtest`: one row per run, then the summaries per split and per GPU type."""

from __future__ import annotations

from typing import Any

from .table_view import Grid, console, kv


def _fmt(value: float, unit: str) -> str:
    if unit == "fraction":
        return f"{value:.1%}"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def render(result: Any, split: str | None = None, gpu: str | None = None, **console_kw: Any) -> None:
    """Print the backtest tables.

    Args:
        result: planner.backtest.Backtest.
        split: the --split filter (named in the title), or None.
        gpu: the --gpu filter, or None.
        **console_kw: passed to the Console (tests pass width and file).
    """
    c = console(**console_kw)
    where = ", ".join(x for x in (split and f"{split} runs", gpu) if x) or "all runs"
    t = Grid(f"Backtest: soraplan against published training runs ({where}); error = predicted / published - 1",
             "run", "split", "gpu", "figure", ">published", ">predicted", ">error", "dominant term")
    for r in result.runs:
        t.add_row(r.name, r.split, r.gpu, r.figure, _fmt(r.published, r.unit), _fmt(r.predicted, r.unit),
                  _pct(r.error, signed=True), f"{r.dominant_term} {r.dominant_share:.0%}")
    c.print(t)
    for e in result.excluded:
        c.print(f"[bold]not predicted[/] {e.name}: {e.reason}")
    rows = []
    for name, s in result.summary.items():
        if s.n:
            rows.append((f"{name} (n={s.n})", f"median |error| {_pct(s.median_abs_error)}, worst "
                         f"{_pct(s.worst_abs_error)} ({s.worst_run}), bias {_pct(s.bias, signed=True)}"))
    for g, d in result.by_gpu.items():
        s = d["all"]
        rows.append((f"{g} (n={s.n})", f"median |error| {_pct(s.median_abs_error)}, worst "
                     f"{_pct(s.worst_abs_error)}, bias {_pct(s.bias, signed=True)}"))
    c.print(kv("Summary (check: runs the fit never saw)", rows, "runs", "errors"))
