"""Layouts evaluated per second: the vectorised search vs the per-layout loop over the scalar planner.

    python benchmarks/bench_search.py [--gpus 200] [--runs 5] [--sample 2000]

Space: the seed (960 frames at 256^2, soraplan-6B on a100-80g) with window attention allowed: every
(attention, tp, pp, vpp, cp, micro-batch, micro-batches, SP, recompute, distributed optimizer) for one GPU count.
Figures (medians of --runs):
  vectorised, full    every layout pushed through the whole array model (rules, memory, every step term)
  vectorised, plan    what `soraplan plan` does: rules first, memory + step for the survivors, then ranking
  reference loop      Spec validation + memory(spec) + step_time(spec) per layout, on a random sample of the
                      same arrays (rejects are cheap for it too: Spec validation fails early)
Single core: BLAS threads are pinned to 1 (numpy's elementwise ops are single-threaded anyway).
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from soraplan.planner import build_spec  # noqa: E402
from soraplan.planner.rank import search_count  # noqa: E402
from soraplan.planner.search import SearchOptions, Space, reference_evaluate  # noqa: E402


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sample", type=int, default=2000)
    a = ap.parse_args()
    spec = build_spec(flags={"frames": 960, "res": 256, "gpu": "a100-80g"})
    space = Space(spec, SearchOptions(allow_window=True))
    x, _ = space.candidates(a.gpus)
    n = len(x)
    print(f"space: {n:,} layouts for {a.gpus} GPUs ({', '.join(space.attentions)})")
    t_full = median_time(lambda: space.evaluate(a.gpus, x, compact=False), a.runs)
    t_compact = median_time(lambda: space.evaluate(a.gpus, x), a.runs)
    t_plan = median_time(lambda: search_count(space, a.gpus, 1e7), a.runs)
    rng = np.random.default_rng(0)
    idx = rng.choice(n, size=min(a.sample, n), replace=False)
    sub = x.take(idx)
    t_ref = median_time(lambda: reference_evaluate(space, a.gpus, sub), max(1, min(3, a.runs)))
    ok = np.nonzero(space.evaluate(a.gpus, x)["reason"] == 0)[0]
    sub_ok = x.take(ok[: a.sample // 4])
    t_ref_ok = median_time(lambda: reference_evaluate(space, a.gpus, sub_ok), 1)
    full_rate, compact_rate, plan_rate = n / t_full, n / t_compact, n / t_plan
    ref_rate, ref_ok_rate = len(idx) / t_ref, len(ok[: a.sample // 4]) / t_ref_ok
    print(f"vectorised, full evaluation : {full_rate:>12,.0f} layouts/s  ({t_full:.3f} s)")
    print(f"vectorised, rules first     : {compact_rate:>12,.0f} layouts/s  ({t_compact:.3f} s)")
    print(f"search_count (plan, ranked) : {plan_rate:>12,.0f} layouts/s  ({t_plan:.3f} s, prefiltered grid)")
    print(f"reference loop, random      : {ref_rate:>12,.0f} layouts/s  ({len(idx)} layouts)")
    print(f"reference loop, feasible    : {ref_ok_rate:>12,.0f} layouts/s  ({len(ok[: a.sample // 4])} layouts)")
    print(f"speed-up, full vs reference : {full_rate / ref_rate:>12,.0f} x")


if __name__ == "__main__":
    main()
