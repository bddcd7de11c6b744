"""Ranking and explaining layouts: `search_count` (the best layouts for one GPU count), `best_overall` (across
GPU counts), `why_best` (the winner against the runner-up, in words) and `format_layout` (one line per layout).

Ranking per GPU count: objective `time` and `deadline` sort by days to train (ties: less memory), `cost` by
dollars. Across GPU counts the best is the fewest days (`time`), the fewest dollars (`cost`) or the fewest
GPUs whose best layout meets `deadline_days` (`deadline`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import UserError
from .memory import GiB
from .results import BestLayout, CountSearch, Layout, LayoutMemory, LayoutStep, LayoutTrain, RankedLayout
from .search import OK, RECOMPUTE, REASONS, LayoutArrays, Space
from .step import STEP_FIELDS

TERM_WORDS = {"gemm_s": "GEMM compute", "attention_s": "attention compute", "elementwise_s": "elementwise ops",
              "tp_comm_s": "TP communication", "cp_comm_s": "exposed CP ring exchange",
              "dp_comm_s": "exposed DP gradient/parameter sync", "pp_bubble_s": "pipeline bubble",
              "pp_p2p_s": "pipeline point-to-point", "optimizer_s": "optimizer step"}
LAYOUT_STYLES = ("flags", "words", "short")


def format_layout(e: Layout, style: str = "flags") -> str:
    """One line for a layout.

    Args:
        e: the layout (a RankedLayout or BestLayout is one; a JSON dict goes through `Layout.from_json`).
        style: `flags` ('tp=8 pp=2 vpp=2 cp=1 dp=16 mb=1 gb=16 SP recompute=none dist-opt', the CLI tables),
            `words` ('TP 8 × PP 2 (virtual 2) × CP 1 × DP 16 (micro-batch 1, ...)', the report's text) or
            `short` ('TP8·PP2v2·CP1·DP16 mb1 sel-rc', the report's chart labels).

    Returns:
        The line.
    """
    if style == "flags":
        bits = [f"tp={e.tp}", f"pp={e.pp}"] + ([f"vpp={e.vpp}"] if e.vpp > 1 else []) + [
            f"cp={e.cp}", f"dp={e.dp}", f"mb={e.micro_batch}", f"gb={e.global_batch}",
            "SP" if e.sequence_parallel else "no-SP", f"recompute={e.recompute}",
            "dist-opt" if e.distributed_optimizer else "no-dist-opt"]
        if e.attention != "full":
            bits.append(e.attention)
        return " ".join(bits)
    if style == "words":
        pp = f"PP {e.pp}" + (f" (virtual {e.vpp})" if e.vpp > 1 else "")
        head = f"TP {e.tp} × {pp} × CP {e.cp} × DP {e.dp}"
        opts = [f"micro-batch {e.micro_batch}"]
        if e.global_batch is not None:
            opts.append(f"global batch {e.global_batch}")
        if e.sequence_parallel:
            opts.append("sequence parallel")
        opts.append("no recompute" if e.recompute == "none" else f"{e.recompute} recompute")
        if e.distributed_optimizer:
            opts.append("distributed optimizer")
        if e.attention and e.attention != "full":
            opts.append(f"{e.attention} attention")
        return f"{head} ({', '.join(opts)})"
    if style == "short":
        vpp = f"v{e.vpp}" if e.vpp > 1 else ""
        rc = {"none": "", "selective": " sel-rc", "full": " full-rc"}.get(e.recompute, "")
        return f"TP{e.tp}·PP{e.pp}{vpp}·CP{e.cp}·DP{e.dp} mb{e.micro_batch}{rc}"
    raise ValueError(f"format_layout: style must be one of {', '.join(LAYOUT_STYLES)}, got {style!r}")


def _num(v: Any) -> Any:
    """numpy scalars -> Python numbers (the JSON contract holds plain ints, floats and bools)."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def search_count(space: Space, gpus: int, samples: float, objective: str = "time", top: int = 5) -> CountSearch:
    """Search every layout for `gpus` GPUs.

    Args:
        space: the search space of one spec.
        gpus: the GPU count.
        samples: training samples (times epochs) the days are counted for.
        objective: `time`, `deadline` (rank by days) or `cost` (rank by dollars).
        top: how many layouts to keep.

    Returns:
        The `top` best layouts (one per layout: micro-batch-count variants collapse into their best), the
        rejection counts and why the winner wins (or why nothing fits).
    """
    if gpus < 1:
        raise UserError(f"--gpus: GPU counts must be positive, got {gpus}")
    x, pre = space.candidates(gpus, prefilter=True)
    r = space.evaluate(gpus, x)
    reason = r["reason"]
    counts = np.bincount(reason, minlength=len(REASONS)) + pre
    rejected = {name: int(counts[i]) for i, name in enumerate(REASONS)
                if i != OK and (counts[i] or name != "untrainable")}   # listed only when it rejects some
    ok = np.nonzero(reason == OK)[0]
    if not len(ok):
        return CountSearch(gpus=gpus, evaluated=int(counts.sum()), feasible=0, rejected=rejected, ranked=(),
                           why_best="", message=infeasible_message(space, gpus, r, rejected))
    price = space.spec.hardware.price
    mp = x.tp[ok] * x.pp[ok] * x.cp[ok]
    dp = gpus // mp
    gb = x.microbatches[ok] * x.micro_batch[ok] * dp
    steps = np.ceil(samples / gb)
    days = steps * r["time_s"][ok] / 86400
    cost = days * 24 * mp * dp * price
    key = cost if objective == "cost" else days
    ranked = ok[np.lexsort((r["total"][ok], key))]
    # one row per layout: variants that differ only in the number of micro-batches (global batch) collapse
    # into their best; the runner-up is then a different layout, not the same one with another batch
    lk = x.attention[ranked]
    for arr, size in ((x.tp, 1024), (x.pp, 1024), (x.vpp, 64), (x.cp, 1024), (x.micro_batch, 1024),
                      (x.sequence_parallel, 2), (x.recompute, 3), (x.distributed_optimizer, 2)):
        lk = lk * size + arr[ranked]
    _, first = np.unique(lk, return_index=True)
    order = ranked[np.sort(first)[:top]]
    layouts = tuple(ranked_layout(space, gpus, x, r, int(i), samples) for i in order)
    return CountSearch(gpus=gpus, evaluated=int(counts.sum()), feasible=int(len(ok)), rejected=rejected,
                       ranked=layouts, why_best=why_best(layouts))


def ranked_layout(space: Space, gpus: int, x: LayoutArrays, r: dict[str, np.ndarray], i: int,
                  samples: float) -> RankedLayout:
    """Layout i of the evaluated arrays, with its memory, step terms and training time."""
    tp, pp, cp = int(x.tp[i]), int(x.pp[i]), int(x.cp[i])
    dp = gpus // (tp * pp * cp)
    mb, m = int(x.micro_batch[i]), int(x.microbatches[i])
    gb = m * mb * dp
    used = tp * pp * cp * dp
    terms = {f: _num(r[f][i]) for f in STEP_FIELDS}
    terms["samples_per_step"] = int(terms["samples_per_step"])
    step = LayoutStep(**terms)
    steps = math.ceil(samples / gb)
    days = steps * step.time_s / 86400
    gpu_hours = days * 24 * used
    total = float(r["total"][i])
    memory = LayoutMemory(weights=float(r["weights"][i]) / GiB, grads=float(r["grads"][i]) / GiB,
                          optimizer=float(r["optimizer"][i]) / GiB, activations=float(r["activations"][i]) / GiB,
                          buffers=space.buffers_bytes / GiB, total=total / GiB, capacity=space.capacity_bytes / GiB,
                          usable=space.usable_bytes / GiB, fits=total <= space.usable_bytes)
    return RankedLayout(
        tp=tp, pp=pp, vpp=int(x.vpp[i]), cp=cp, dp=dp, micro_batch=mb, microbatches=m, global_batch=gb,
        sequence_parallel=bool(x.sequence_parallel[i]), recompute=RECOMPUTE[int(x.recompute[i])],
        distributed_optimizer=bool(x.distributed_optimizer[i]), attention=space.attentions[int(x.attention[i])],
        gpus_used=used, memory_gib=memory, step=step,
        train=LayoutTrain(samples=samples, steps=steps, days=days, gpu_hours=gpu_hours,
                          cost_usd=gpu_hours * space.spec.hardware.price))


_KNOBS = (("gpus_used", "GPUs used"), ("tp", "tp"), ("pp", "pp"), ("vpp", "vpp"), ("cp", "cp"), ("dp", "dp"),
          ("micro_batch", "micro-batch"), ("global_batch", "global batch"), ("sequence_parallel", "sequence parallel"),
          ("recompute", "recompute"), ("distributed_optimizer", "distributed optimizer"), ("attention", "attention"))


def why_best(ranked: tuple[RankedLayout, ...] | list[RankedLayout]) -> str:
    """Plain words: how the winner differs from the runner-up and which step terms (per sample) decide it."""
    if not ranked:
        return ""
    win = ranked[0]
    if len(ranked) == 1:
        return f"{format_layout(win)} is the only layout that fits."
    run = ranked[1]
    diff = [f"{label} {_fmt(getattr(run, k))} -> {_fmt(getattr(win, k))}" for k, label in _KNOBS
            if getattr(run, k) != getattr(win, k)]
    dw, dr = win.train.days, run.train.days
    head = (f"The winner ({format_layout(win)}) beats the runner-up by {(dr - dw) / dr * 100 if dr else 0:.1f} % "
            f"({dw:.2f} vs {dr:.2f} days); from the runner-up to the winner: {', '.join(diff) or 'the same knobs'}.")
    # per-sample seconds of each term: the global batches may differ
    pw = {k: win.step.term(k) / win.global_batch for k in TERM_WORDS}
    pr = {k: run.step.term(k) / run.global_batch for k in TERM_WORDS}
    deltas = sorted(((pr[k] - pw[k], k) for k in TERM_WORDS), key=lambda t: -abs(t[0]))
    parts = []
    for d, k in deltas[:3]:
        if abs(d) < 1e-9:
            continue
        more = "more" if d > 0 else "less"
        parts.append(f"{abs(d) * 1e3:.2f} ms {more} {TERM_WORDS[k]}")
    if not parts:
        return head + " Their step terms are equal; the winner needs less memory " \
                      f"({win.memory_gib.total:.1f} vs {run.memory_gib.total:.1f} GiB)."
    return head + " Per sample, the runner-up spends " + ", ".join(parts) + "."


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v)


def infeasible_message(space: Space, gpus: int, r: dict[str, np.ndarray], rejected: dict[str, int]) -> str:
    """Why no layout fits on `gpus` GPUs, and what to change."""
    why = ", ".join(f"{n:,} {k.replace('_', '-')}" for k, n in rejected.items() if n)
    msg = f"no layout fits on {gpus} x {space.spec.hardware.spec.name} (rejected: {why})."
    mem = np.nonzero(r["reason"] == REASONS.index("memory"))[0]
    if len(mem):
        j = mem[np.argmin(r["total"][mem])]
        msg += (f" The smallest needs {r['total'][j] / GiB:.1f} GiB per GPU > {space.usable_bytes / GiB:.1f} GiB usable "
                f"({space.capacity_bytes / GiB:.0f} GiB less {space.options.headroom:.0%} headroom): try more GPUs, a GPU "
                "with more memory, window attention (--allow-window) or a lower --headroom.")
    elif rejected.get("batch"):
        lo, hi = space.global_batch_range
        msg += f" No layout reaches a global batch in {lo}-{hi}: widen --global-batch-range."
    elif rejected.get("divisibility") and not rejected.get("tp_over_node"):
        msg += (" Every layout breaks a divisibility rule (heads % tp, layers % (pp*vpp), tokens % cp, "
                "tp*pp*cp <= GPUs): check the pinned --tp/--pp/--vpp/--cp.")
    elif rejected.get("tp_over_node"):
        msg += " Raise --max-tp-in-node to allow TP across nodes."
    return msg


def _best(gpus: int, e: RankedLayout) -> BestLayout:
    return BestLayout(**{f: getattr(e, f) for f in e.__dataclass_fields__}, gpus=gpus)


def best_overall(counts: list[CountSearch], objective: str, deadline_days: float | None) -> tuple[BestLayout | None, str]:
    """The recommended GPU count's best layout, and why it was chosen."""
    rows = [(c.gpus, c.ranked[0]) for c in counts if c.ranked]
    if not rows:
        return None, "no GPU count has a layout that fits"
    if objective == "cost":
        g, e = min(rows, key=lambda t: (t[1].train.cost_usd, t[1].train.days))
        return _best(g, e), f"cheapest: {g} GPUs at ${e.train.cost_usd:,.0f}"
    if objective == "deadline":
        if deadline_days is None:
            raise UserError("--objective deadline needs --deadline-days")
        meet = [(g, e) for g, e in rows if e.train.days <= deadline_days]
        if meet:
            g, e = min(meet, key=lambda t: (t[0], t[1].train.cost_usd))
            return _best(g, e), f"fewest GPUs that finish within {deadline_days:g} days: {g} ({e.train.days:.1f} days)"
        g, e = min(rows, key=lambda t: t[1].train.days)
        return _best(g, e), (f"no GPU count meets {deadline_days:g} days; the fastest is {g} GPUs at "
                             f"{e.train.days:.1f} days")
    g, e = min(rows, key=lambda t: (t[1].train.days, t[1].train.cost_usd))
    return _best(g, e), f"fastest: {g} GPUs, {e.train.days:.1f} days"
