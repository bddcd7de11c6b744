"""`plan(spec, gpu_counts, ...)`: the ranked layouts per GPU count, the best one, the budget and the
sensitivity list, as one JSON-ready dict (what `soraplan plan --json` prints and the report reads).

Ranking per GPU count: objective `time` and `deadline` sort by days to train (ties: less memory), `cost` by
dollars. Across GPU counts the best is the fewest days (`time`), the fewest dollars (`cost`) or the fewest
GPUs whose best layout meets `deadline_days` (`deadline`).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .errors import UserError
from .memory import GiB
from .search import FIELDS, OK, RECOMPUTE, REASONS, SearchOptions, Space
from .spec import Spec
from .step import STEP_FIELDS

OBJECTIVES = ("time", "cost", "deadline")
DEADLINE_SCAN = (8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
ProgressFn = Callable[[str, int, int], None]

TERM_WORDS = {"gemm_s": "GEMM compute", "attention_s": "attention compute", "elementwise_s": "elementwise ops",
              "tp_comm_s": "TP communication", "cp_comm_s": "exposed CP ring exchange",
              "dp_comm_s": "exposed DP gradient/parameter sync", "pp_bubble_s": "pipeline bubble",
              "pp_p2p_s": "pipeline point-to-point", "optimizer_s": "optimizer step"}


def _num(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def training_samples(spec: Spec) -> float:
    return spec.training.samples * spec.training.epochs


def search_count(space: Space, gpus: int, samples: float, objective: str = "time", top: int = 5) -> dict[str, Any]:
    """Search every layout for `gpus` GPUs; the `top` best, rejection counts and why the winner wins."""
    if gpus < 1:
        raise UserError(f"--gpus: GPU counts must be positive, got {gpus}")
    x, pre = space.candidates(gpus, prefilter=True)
    r = space.evaluate(gpus, x)
    reason = r["reason"]
    counts = np.bincount(reason, minlength=len(REASONS)) + pre
    rejected = {name: int(counts[i]) for i, name in enumerate(REASONS) if i != OK}
    ok = np.nonzero(reason == OK)[0]
    out: dict[str, Any] = {"gpus": gpus, "evaluated": int(counts.sum()), "feasible": int(len(ok)), "rejected": rejected,
                           "ranked": []}
    price = space.spec.hardware.price
    if len(ok):
        mp = x["tp"][ok] * x["pp"][ok] * x["cp"][ok]
        dp = gpus // mp
        gb = x["m"][ok] * x["mb"][ok] * dp
        steps = np.ceil(samples / gb)
        days = steps * r["time_s"][ok] / 86400
        cost = days * 24 * mp * dp * price
        key = cost if objective == "cost" else days
        ranked = ok[np.lexsort((r["total"][ok], key))]
        # one row per layout: variants that differ only in the number of micro-batches (global batch) collapse
        # into their best; the runner-up is then a different layout, not the same one with another batch
        lk = x["att"][ranked]
        for f, size in (("tp", 1024), ("pp", 1024), ("vpp", 64), ("cp", 1024), ("mb", 1024), ("sp", 2), ("rc", 3), ("dist", 2)):
            lk = lk * size + x[f][ranked]
        _, first = np.unique(lk, return_index=True)
        order = ranked[np.sort(first)[:top]]
        out["ranked"] = [entry(space, gpus, x, r, int(i), samples) for i in order]
        out["why_best"] = why_best(out["ranked"])
    else:
        out["why_best"] = ""
        out["message"] = infeasible_message(space, gpus, x, r, rejected)
    return out


def entry(space: Space, gpus: int, x: dict[str, np.ndarray], r: dict[str, np.ndarray], i: int, samples: float) -> dict[str, Any]:
    """One ranked layout as the JSON contract's dict."""
    tp, pp, cp = int(x["tp"][i]), int(x["pp"][i]), int(x["cp"][i])
    dp = gpus // (tp * pp * cp)
    mb, m = int(x["mb"][i]), int(x["m"][i])
    gb = m * mb * dp
    used = tp * pp * cp * dp
    step = {f: _num(r[f][i]) for f in STEP_FIELDS}
    step["samples_per_step"] = int(step["samples_per_step"])
    steps = math.ceil(samples / gb)
    days = steps * step["time_s"] / 86400
    gpu_hours = days * 24 * used
    total = float(r["total"][i])
    return {
        "tp": tp, "pp": pp, "vpp": int(x["vpp"][i]), "cp": cp, "dp": dp, "micro_batch": mb, "microbatches": m,
        "global_batch": gb, "sequence_parallel": bool(x["sp"][i]), "recompute": RECOMPUTE[int(x["rc"][i])],
        "distributed_optimizer": bool(x["dist"][i]), "attention": space.attentions[int(x["att"][i])], "gpus_used": used,
        "memory_gib": {"weights": float(r["weights"][i]) / GiB, "grads": float(r["grads"][i]) / GiB,
                       "optimizer": float(r["optimizer"][i]) / GiB, "activations": float(r["activations"][i]) / GiB,
                       "buffers": space.buffers / GiB, "total": total / GiB, "capacity": space.capacity / GiB,
                       "usable": space.usable / GiB, "fits": total <= space.usable},
        "step": step,
        "train": {"samples": samples, "steps": steps, "days": days, "gpu_hours": gpu_hours,
                  "cost_usd": gpu_hours * space.spec.hardware.price},
    }


def layout_text(e: dict[str, Any]) -> str:
    bits = [f"tp={e['tp']}", f"pp={e['pp']}"] + ([f"vpp={e['vpp']}"] if e["vpp"] > 1 else []) + [
        f"cp={e['cp']}", f"dp={e['dp']}", f"mb={e['micro_batch']}", f"gb={e['global_batch']}",
        "SP" if e["sequence_parallel"] else "no-SP", f"recompute={e['recompute']}",
        "dist-opt" if e["distributed_optimizer"] else "no-dist-opt"]
    if e["attention"] != "full":
        bits.append(e["attention"])
    return " ".join(bits)


_KNOBS = (("gpus_used", "GPUs used"), ("tp", "tp"), ("pp", "pp"), ("vpp", "vpp"), ("cp", "cp"), ("dp", "dp"), ("micro_batch", "micro-batch"),
          ("global_batch", "global batch"), ("sequence_parallel", "sequence parallel"), ("recompute", "recompute"),
          ("distributed_optimizer", "distributed optimizer"), ("attention", "attention"))


def why_best(ranked: list[dict[str, Any]]) -> str:
    """Plain words: how the winner differs from the runner-up and which step terms (per sample) decide it."""
    if not ranked:
        return ""
    win = ranked[0]
    if len(ranked) == 1:
        return f"{layout_text(win)} is the only layout that fits."
    run = ranked[1]
    diff = [f"{label} {_fmt(run[k])} -> {_fmt(win[k])}" for k, label in _KNOBS if run[k] != win[k]]
    dw, dr = win["train"]["days"], run["train"]["days"]
    head = (f"The winner ({layout_text(win)}) beats the runner-up by {(dr - dw) / dr * 100 if dr else 0:.1f} % "
            f"({dw:.2f} vs {dr:.2f} days); from the runner-up to the winner: {', '.join(diff) or 'the same knobs'}.")
    # per-sample seconds of each term: the global batches may differ
    pw = {k: win["step"][k] / win["global_batch"] for k in TERM_WORDS}
    pr = {k: run["step"][k] / run["global_batch"] for k in TERM_WORDS}
    deltas = sorted(((pr[k] - pw[k], k) for k in TERM_WORDS), key=lambda t: -abs(t[0]))
    parts = []
    for d, k in deltas[:3]:
        if abs(d) < 1e-9:
            continue
        more = "more" if d > 0 else "less"
        parts.append(f"{abs(d) * 1e3:.2f} ms {more} {TERM_WORDS[k]}")
    if not parts:
        return head + " Their step terms are equal; the winner needs less memory " \
                      f"({win['memory_gib']['total']:.1f} vs {run['memory_gib']['total']:.1f} GiB)."
    return head + " Per sample, the runner-up spends " + ", ".join(parts) + "."


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v)


def infeasible_message(space: Space, gpus: int, x: dict[str, np.ndarray], r: dict[str, np.ndarray],
                       rejected: dict[str, int]) -> str:
    why = ", ".join(f"{n:,} {k.replace('_', '-')}" for k, n in rejected.items() if n)
    msg = f"no layout fits on {gpus} x {space.spec.hardware.spec.name} (rejected: {why})."
    mem = np.nonzero(r["reason"] == REASONS.index("memory"))[0]
    if len(mem):
        j = mem[np.argmin(r["total"][mem])]
        msg += (f" The smallest needs {r['total'][j] / GiB:.1f} GiB per GPU > {space.usable / GiB:.1f} GiB usable "
                f"({space.capacity / GiB:.0f} GiB less {space.options.headroom:.0%} headroom): try more GPUs, a GPU "
                "with more memory, window attention (--allow-window) or a lower --headroom.")
    elif rejected.get("batch"):
        msg += f" No layout reaches a global batch in {space.gb_range[0]}-{space.gb_range[1]}: widen --global-batch-range."
    elif rejected.get("divisibility") and not rejected.get("tp_over_node"):
        msg += (" Every layout breaks a divisibility rule (heads % tp, layers % (pp*vpp), tokens % cp, "
                "tp*pp*cp <= GPUs): check the pinned --tp/--pp/--vpp/--cp.")
    elif rejected.get("tp_over_node"):
        msg += " Raise --max-tp-in-node to allow TP across nodes."
    return msg


def best_overall(counts: list[dict[str, Any]], objective: str, deadline_days: float | None) -> tuple[dict[str, Any] | None, str]:
    rows = [(c["gpus"], c["ranked"][0]) for c in counts if c["ranked"]]
    if not rows:
        return None, "no GPU count has a layout that fits"
    if objective == "cost":
        g, e = min(rows, key=lambda t: (t[1]["train"]["cost_usd"], t[1]["train"]["days"]))
        return {**e, "gpus": g}, f"cheapest: {g} GPUs at ${e['train']['cost_usd']:,.0f}"
    if objective == "deadline":
        if deadline_days is None:
            raise UserError("--objective deadline needs --deadline-days")
        meet = [(g, e) for g, e in rows if e["train"]["days"] <= deadline_days]
        if meet:
            g, e = min(meet, key=lambda t: (t[0], t[1]["train"]["cost_usd"]))
            return {**e, "gpus": g}, f"fewest GPUs that finish within {deadline_days:g} days: {g} ({e['train']['days']:.1f} days)"
        g, e = min(rows, key=lambda t: t[1]["train"]["days"])
        return {**e, "gpus": g}, (f"no GPU count meets {deadline_days:g} days; the fastest is {g} GPUs at "
                                  f"{e['train']['days']:.1f} days")
    g, e = min(rows, key=lambda t: (t[1]["train"]["days"], t[1]["train"]["cost_usd"]))
    return {**e, "gpus": g}, f"fastest: {g} GPUs, {e['train']['days']:.1f} days"


def plan(spec: Spec, gpu_counts: tuple[int, ...] | list[int] | None = None, objective: str = "time",
         deadline_days: float | None = None, options: SearchOptions | None = None, top: int = 5,
         curriculum: Any = None, budget: bool = True, sensitivity: bool = True,
         progress: ProgressFn | None = None) -> dict[str, Any]:
    """The whole plan as a JSON-ready dict (keys: spec, objective, gpu_counts, best, budget, sensitivity)."""
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
        from .budget import load_curriculum, stage_spec

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
    out: dict[str, Any] = {
        "spec": spec.model_dump(mode="json"), "objective": objective, "deadline_days": deadline_days,
        "search": {"headroom": options.headroom, "max_tp_in_node": space.max_tp, "global_batch_range": list(space.gb_range),
                   "attentions": list(space.attentions), "samples": samples,
                   "efficiency": {"gemm": space.c.eff.gemm, "attention": space.c.eff.attention, "hbm": space.c.eff.hbm,
                                  "comm": space.c.eff.comm, "source": space.c.eff.source}},
        "gpu_counts": results, "best": best, "best_reason": best_reason,
    }
    if budget:
        from .budget import training_budget

        tick("training budget")
        out["budget"] = training_budget(spec, counts_in, curriculum=curriculum, options=options, objective=objective)
        done += 1
    if sensitivity:
        from .budget import sensitivity as sens

        tick("sensitivity")
        out["sensitivity"] = sens(spec, best["gpus"], options, objective) if best else []
        done += 1
    if budget and sensitivity and best:
        from .budget import seed_statement

        out["budget"]["statement"] = seed_statement(out["budget"], out["sensitivity"], spec)
    tick("done")
    return out


__all__ = ["plan", "search_count", "why_best", "layout_text", "FIELDS", "OBJECTIVES"]
