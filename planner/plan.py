"""`plan(spec, gpu_counts, ...)`: the ranked layouts per GPU count, the best one, the budget and the
sensitivity list, as one typed `Plan` (its `.to_json()` is what `soraplan plan --json` prints and the report reads).

How layouts are ranked and the best GPU count chosen: `rank.py`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from .budget import load_curriculum, seed_statement, stage_spec, training_budget
from .budget import sensitivity as sensitivity_rows
from .errors import UserError
from .rank import best_overall, search_count
from .results import Plan, SearchSummary
from .search import SearchOptions, Space
from .spec import Spec
from .train import training_samples

OBJECTIVES = ("time", "cost", "deadline")
DEADLINE_SCAN = (8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
ProgressFn = Callable[[str, int, int], None]


def plan(spec: Spec, gpu_counts: tuple[int, ...] | list[int] | None = None, objective: str = "time",
         deadline_days: float | None = None, options: SearchOptions | None = None, top: int = 5,
         curriculum: Any = None, budget: bool = True, sensitivity: bool = True,
         progress: ProgressFn | None = None) -> Plan:
    """The whole plan.

    Args:
        spec: the model, video, hardware and training to plan for.
        gpu_counts: GPU counts to search (default: the spec's compare_gpus; DEADLINE_SCAN for `deadline`).
        objective: `time`, `cost` or `deadline` (with `deadline_days`).
        deadline_days: the deadline for objective `deadline`.
        options: the layout search's options.
        top: ranked layouts kept per GPU count.
        curriculum: a curriculum for the budget (see budget.py), or None for the spec's samples.
        budget, sensitivity: compute the training budget / the sensitivity list.
        progress: called with (what, done, total) as the work proceeds.

    Returns:
        The Plan.
    """
    if objective not in OBJECTIVES:
        raise UserError(f"--objective: must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if objective == "deadline" and deadline_days is None:
        raise UserError("--objective deadline needs --deadline-days")
    if top < 1:
        raise UserError(f"--top: must be >= 1, got {top}")
    if gpu_counts:
        counts_in = tuple(gpu_counts)
    elif objective == "deadline":
        counts_in = DEADLINE_SCAN          # how many GPUs for the deadline: scan 8 .. 2048
    else:
        counts_in = tuple(spec.training.compare_gpus)
    options = options or SearchOptions()
    if budget and curriculum is not None:
        for i, st in enumerate(load_curriculum(curriculum)["stages"]):   # bad input fails before the search
            stage_spec(spec, st, i)
    space = Space(spec, options)
    samples = training_samples(spec)
    total_steps = len(counts_in) + (1 if budget else 0) + (1 if sensitivity else 0)
    done = 0

    def tick(what: str) -> None:
        if progress:
            progress(what, done, total_steps)

    results = []
    for n in counts_in:
        tick(f"searching {n} GPUs")
        results.append(search_count(space, n, samples, objective, top))
        done += 1
    best, best_reason = best_overall(results, objective, deadline_days)
    eff = space.step_constants.eff
    summary = SearchSummary(headroom=options.headroom, max_tp_in_node=space.max_tp_in_node,
                            global_batch_range=space.global_batch_range, attentions=space.attentions, samples=samples,
                            efficiency={"gemm": eff.gemm, "attention": eff.attention, "hbm": eff.hbm, "comm": eff.comm,
                                        "source": eff.source})
    budget_out = sens_out = None
    if budget:
        tick("training budget")
        budget_out = training_budget(spec, counts_in, curriculum=curriculum, options=options, objective=objective)
        done += 1
    if sensitivity:
        tick("sensitivity")
        sens_out = tuple(sensitivity_rows(spec, best.gpus, options, objective)) if best else ()
        done += 1
    if budget_out is not None and sens_out is not None and best:
        budget_out = replace(budget_out, statement=seed_statement(budget_out, list(sens_out), spec))
    tick("done")
    return Plan(spec=spec, objective=objective, deadline_days=deadline_days, search=summary,
                gpu_counts=tuple(results), best=best, best_reason=best_reason, budget=budget_out,
                sensitivity=sens_out)


__all__ = ["plan", "OBJECTIVES", "DEADLINE_SCAN"]
