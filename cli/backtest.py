"""`soraplan backtest`: the step-time model against published training runs (docs/backtest.md).

    soraplan backtest [--split tune|check] [--gpu NAME] [--json]

Numbers: `soraplan.planner.backtest.backtest` (the corpus in planner/data/published_runs.yaml, the step model
with the committed fit). Rendering: `backtest_view.render` (rich tables) or `--json`:
{"runs": [{name, source, kind, gpu, split, published, predicted, error, figure, unit, dominant_term, ...}],
 "excluded": [...], "summary": {"check": {n, median_abs_error, worst_abs_error, bias}, "tune": {...}},
 "summary_by_gpu": {gpu: {"check", "tune", "all"}}, "fit": {...}}.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Optional

import typer

SPLIT_NAMES = ("tune", "check")


def to_json(result: Any) -> dict[str, Any]:
    """The backtest as the JSON object `--json` prints (before soraplan_version is added).

    Args:
        result: planner.backtest.Backtest.

    Returns:
        The JSON-ready dict.
    """
    from soraplan.planner.efficiency import current_fit, flat

    def summ(s: Any) -> dict[str, Any]:
        return {"n": s.n, "median_abs_error": s.median_abs_error, "worst_abs_error": s.worst_abs_error,
                "bias": s.bias, "worst_run": s.worst_run}

    fit = current_fit()
    return {
        "runs": [r.as_dict() for r in result.runs],
        "excluded": [asdict(e) for e in result.excluded],
        "summary": {k: summ(v) for k, v in result.summary.items()},
        "summary_by_gpu": {g: {k: summ(v) for k, v in d.items()} for g, d in result.by_gpu.items()},
        "fit": {"date": fit.date, "tune_runs": len(fit.tune_runs), "params": flat(fit)},
    }


def backtest(split: Annotated[Optional[str], typer.Option("--split", help="only the tune or the check runs")] = None,
             gpu: Annotated[Optional[str], typer.Option("--gpu", help="only runs on this GPU type (e.g. h100-sxm)")] = None,
             json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False) -> None:
    """Compare soraplan's step-time model with published training runs: per run the predicted and published
    figure and the error; a summary per split (tune: the fit's runs, check: held out) and per GPU type."""
    from soraplan.planner.backtest import backtest as run_backtest
    from soraplan.planner.corpus import load_corpus
    from soraplan.planner.errors import UserError

    from .common import fail, print_json

    if split is not None and split not in SPLIT_NAMES:
        fail(f"--split: must be one of {', '.join(SPLIT_NAMES)}, got {split!r}")
    try:
        runs = load_corpus()
    except UserError as e:
        fail(str(e))
    if gpu is not None:
        known = sorted({r.gpu for r in runs})
        if gpu.strip().lower() not in known:
            fail(f"--gpu: no published run on {gpu!r}; the corpus has {', '.join(known)}")
        gpu = gpu.strip().lower()
    result = run_backtest(split=split, gpu=gpu)
    if json_out:
        print_json(to_json(result))
        return
    from .backtest_view import render

    render(result, split=split, gpu=gpu)


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)
