"""Fit the step model's free parameters (planner/efficiency.py) on the backtest corpus's `tune` runs only.

    python benchmarks/fit_backtest.py            # print the fit and the tune / check summaries
    python benchmarks/fit_backtest.py --write    # also write planner/data/step_fit.yaml (temp file, rename)

Loss: the Cauchy loss of the log error on every `tune` run, sum of log(1 + (ln(pred/pub) / 0.15)^2), so that
runs the model cannot represent (a step that also encodes text and video, a slower framework) pull the fit
less than a squared loss would; plus a weak prior that keeps each parameter near its starting value (a factor
of e costs as much as one run at 15 % error). Search: coordinate descent in log space with shrinking steps,
deterministic. `check` runs are never read until the fit is done; their summary is printed on its own.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import sys
import tempfile
from pathlib import Path


import soraplan.planner.step as step
from soraplan.planner.backtest import backtest
from soraplan.planner.corpus import load_corpus
from soraplan.planner.efficiency import FREE, StepFit, flat

step.op_work = functools.lru_cache(maxsize=None)(step.op_work)   # the work does not depend on the fit

# start values and bounds (physical limits: an efficiency in (0, 0.95], times and sizes >= 0)
START = {"gemm_max.ampere": 0.70, "gemm_max.hopper": 0.70, "attn_max.ampere": 0.55, "attn_max.hopper": 0.45,
         "gemm_n0": 64.0, "gemm_t0": 256.0, "attn_s0": 512.0, "comm_max.intra": 0.80, "comm_max.inter": 0.80,
         "launch_s": 20e-6, "straggler": 0.01}
UPPER = {"gemm_max.ampere": 0.95, "gemm_max.hopper": 0.95, "attn_max.ampere": 0.95, "attn_max.hopper": 0.95,
         "comm_max.intra": 0.95, "comm_max.inter": 0.95}
SCALE = 0.15       # log error at which a run's loss starts to flatten
PRIOR = 1.0        # weight of the prior per parameter (per unit of ln(value / start) squared)
FIT_PATH = Path(__file__).resolve().parent.parent / "planner" / "data" / "step_fit.yaml"


def loss(fit: StepFit, tune: tuple) -> float:
    rows = backtest(split="tune", fit=fit, runs=tune).runs
    data = sum(math.log1p((math.log1p(r.error) / SCALE) ** 2) for r in rows)
    values = flat(fit)
    prior = sum(PRIOR * math.log(max(values[k], 1e-12) / START[k]) ** 2 for k in FREE) / len(FREE)
    return data + prior


def fit_params(tune: tuple, sweeps: int) -> tuple[StepFit, float]:
    fit = StepFit().with_values(**START)
    best = loss(fit, tune)
    step_ln = 0.5
    for sweep in range(sweeps):
        improved = False
        for key in FREE:
            for direction in (1, -1):
                v = flat(fit)[key] * math.exp(direction * step_ln)
                v = min(v, UPPER.get(key, math.inf))
                trial = fit.with_values(**{key: v})
                val = loss(trial, tune)
                if val < best - 1e-9:
                    fit, best, improved = trial, val, True
                    break
        print(f"sweep {sweep + 1:2d}  step x{math.exp(step_ln):.3f}  loss {best:.4f}", file=sys.stderr)
        if not improved:
            step_ln /= 2
            if step_ln < 0.01:
                break
    return fit, best


def write_fit(fit: StepFit, tune_names: list[str]) -> None:
    doc = {"note": "The step model's fitted parameters (planner/efficiency.py), written by benchmarks/fit_backtest.py "
                   "from the backtest corpus's tune runs only; do not edit by hand, rerun the script. JSON text, "
                   "which is also YAML: soraplan estimate reads it without a YAML parser.",
           "date": datetime.date.today().isoformat(),
           "method": "Cauchy loss of the log error on the tune runs, weak prior, coordinate descent",
           "tune_runs": tune_names,
           "params": {k: float(f"{v:.6g}") for k, v in flat(fit).items()}}
    text = json.dumps(doc, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=FIT_PATH.parent, prefix=".step_fit.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, FIT_PATH)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write planner/data/step_fit.yaml")
    ap.add_argument("--sweeps", type=int, default=60)
    args = ap.parse_args()
    tune = tuple(r for r in load_corpus() if r.split == "tune")
    fit, best = fit_params(tune, args.sweeps)
    print(f"fitted on {len(tune)} tune runs, loss {best:.4f}")
    for k, v in flat(fit).items():
        print(f"  {k:22s} {v:.6g}")
    res = backtest(fit=fit)
    for split in ("tune", "check"):
        s = res.summary[split]
        print(f"{split:5s}: n={s.n} median |error| {s.median_abs_error:.1%}, worst {s.worst_abs_error:.1%} "
              f"({s.worst_run}), bias {s.bias:+.1%}")
    for r in res.runs:
        print(f"  {r.split:5s} {r.name:45s} {r.error:+7.1%}  {r.dominant_term}")
    if args.write:
        write_fit(fit, [r.name for r in tune])
        print(f"wrote {FIT_PATH}")


if __name__ == "__main__":
    main()
