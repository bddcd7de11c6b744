"""Every number the HTML capacity report shows, gathered from the planner's typed results.

The report reads the plan as the planner returns it (`soraplan.planner.results.Plan`: ranked layouts,
budget, sensitivity rows), by attribute. The page's own rows (summary, GPU counts, risks, rank grid,
assumptions) are JSON-ready dicts built here; the parts that come straight from the plan (top layouts,
budget, sensitivity) stay the planner's typed objects.

Pure: no plotly, no file or network access. The renderer (`cli/report_view.py`) only formats what
this module returns; it never computes a planning number itself. Sources:
  - `soraplan.planner.plan.plan(spec, gpu_counts, ...)`: ranked layouts per GPU count, the recommendation,
    the curriculum budget and the sensitivity list;
  - `soraplan.planner.estimate` for sequence arithmetic, parameters, FLOPs and the attention comparison
    (evaluated at the recommended layout);
  - a `soraplan validate --json` result, turned into a `Validation` by `normalize_validation` where the
    file is read, for the evidence section.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from .estimate import attention_comparison, estimate
from .errors import UserError
from .plan import plan as run_planner
from .rank import TERM_WORDS, format_layout
from .results import (BestLayout, Budget, CountSearch, CountTotal, Layout, PassRow, Plan, RankedLayout,
                      SearchSummary, SensitivityRow, StageBudget, StageRow)
from .spec import Spec, spec_with

LAYOUT_KEYS = ("tp", "pp", "vpp", "cp", "cp_comm", "dp", "micro_batch", "global_batch", "sequence_parallel", "recompute",
               "distributed_optimizer", "attention")
TOP_LAYOUTS = 5
HEADROOM_WARN = 0.10  # the plan's default memory headroom (SearchOptions.headroom): less than this is flagged


# ---------------------------------------------------------------------------------------- report types
@dataclass(frozen=True)
class ValidationRow:
    """One prediction checked against a measurement (`ok` None: reported without a tolerance)."""

    config: str
    quantity: str
    unit: str
    measured: Any
    predicted: Any
    error_pct: float | None
    tolerance_pct: float | None
    ok: bool | None
    device: str | None


@dataclass(frozen=True)
class Validation:
    """A `soraplan validate --json` result in one shape: when, on what, and its rows."""

    date: str | None
    device: str | None
    gpu_run: bool
    efficiency: float | None
    rows: tuple[ValidationRow, ...]

    @property
    def passed(self) -> int:
        return sum(1 for r in self.rows if r.ok is True)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r.ok is False)

    @property
    def info(self) -> int:
        return sum(1 for r in self.rows if r.ok is None)


@dataclass(frozen=True)
class StageAtBest:
    """A curriculum stage and its row at the recommended GPU count (None: that count was not budgeted)."""

    stage: StageBudget
    at_best: StageRow | None


@dataclass(frozen=True)
class BudgetView:
    """The plan's training budget as the report shows it (empty when the plan has none)."""

    curriculum: bool
    gpus: int | None                 # the recommended GPU count
    stages: tuple[StageAtBest, ...]
    totals: tuple[CountTotal, ...]
    passes: tuple[PassRow, ...]
    pass_samples: int | None
    statement: str


# ----------------------------------------------------------------------------------------------- plan seam
def spec_for_layout(spec: Spec, entry: RankedLayout) -> Spec:
    """The spec with a ranked layout on the GPUs it uses (to ask the planner about that layout)."""
    par: dict[str, Any] = {"tp": entry.tp, "pp": entry.pp, "vpp": entry.vpp, "cp": entry.cp, "dp": entry.dp,
                           "micro_batch": entry.micro_batch, "global_batch": entry.global_batch,
                           "sequence_parallel": entry.sequence_parallel, "recompute": entry.recompute,
                           "distributed_optimizer": entry.distributed_optimizer,
                           "gpus": entry.tp * entry.pp * entry.cp * entry.dp,
                           "recompute_layers": None,  # a ranked layout recomputes every layer of its stage
                           "cp_comm": entry.cp_comm or spec.parallel.cp_comm}
    return spec_with(spec, parallel=par, model={"attention": entry.attention or spec.model.attention})


# ------------------------------------------------------------------------------------------------ helpers
def layout_text(e: Layout) -> str:
    """A layout in plain words: `format_layout(..., "words")`."""
    return format_layout(e, "words")


def rank_grid(tp: int, pp: int, cp: int, dp: int, gpus_per_node: int, max_nodes: int = 256) -> dict[str, Any]:
    """GPUs laid out on nodes in Megatron's default rank order tp-cp-dp-pp (TP fastest, so TP stays in a node).

    rank = tp_rank + tp*(cp_rank + cp*(dp_rank + dp*pp_rank)); node = rank // gpus_per_node.
    """
    world = tp * pp * cp * dp
    nodes = math.ceil(world / gpus_per_node)
    shown = min(nodes, max_nodes)
    cells: list[list[dict[str, int] | None]] = []
    for node in range(shown):
        row: list[dict[str, int] | None] = []
        for slot in range(gpus_per_node):
            r = node * gpus_per_node + slot
            if r >= world:
                row.append(None)
                continue
            row.append({"rank": r, "tp": r % tp, "cp": r // tp % cp, "dp": r // (tp * cp) % dp,
                        "pp": r // (tp * cp * dp)})
        cells.append(row)
    return {"world": world, "nodes": nodes, "gpus_per_node": gpus_per_node, "shown_nodes": shown, "cells": cells,
            "tp": tp, "pp": pp, "cp": cp, "dp": dp, "replica_gpus": tp * pp * cp}


def _first(d: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return default


def normalize_validation(raw: Any) -> Validation | None:
    """A parsed `soraplan validate --json` result as a `Validation` (the one place its keys are read).

    `soraplan validate --json` prints {"machine": {"date", "host", "cpus", ...}, "device": "cpu" | "cuda", "rows": [{"config", "quantity",
    "measured", "predicted", "tolerance" (relative; 0 exact; None: reported only), "unit", "error" (relative),
    "ok"}], "errors": [{"config", "error"}], "failed", "ok"} and, on a GPU, "calibration": {"device" (the card),
    "efficiency", "gemm_efficiency", "attention_efficiency", ...}. A few other spellings are accepted too.

    Args:
        raw: the parsed JSON, or None (no file).

    Returns:
        The Validation, or None for None; a UserError naming --validation when it holds no comparisons.
    """
    if raw is None:
        return None
    meta: dict[str, Any] = raw if isinstance(raw, dict) else {}
    machine: dict[str, Any] = meta["machine"] if isinstance(meta.get("machine"), dict) else {}
    calib: dict[str, Any] = meta["calibration"] if isinstance(meta.get("calibration"), dict) else {}
    rows_raw = raw if isinstance(raw, list) else _first(meta, "rows", "results", "comparisons", "checks", default=[])
    if isinstance(rows_raw, dict):  # {quantity: {...}}
        rows_raw = [dict(v, quantity=k) for k, v in rows_raw.items() if isinstance(v, dict)]
    if not isinstance(rows_raw, list):
        raise UserError("--validation: not a `soraplan validate --json` result (no list of comparisons)")
    rows = []
    for r in rows_raw:
        if not isinstance(r, dict):
            continue
        measured, predicted = _first(r, "measured", "actual"), _first(r, "predicted", "planner", "expected")
        err = _first(r, "error_pct", "err_pct", "error_percent")
        if err is None and _is_num(_first(r, "error", "rel_error")):
            err = 100 * float(_first(r, "error", "rel_error"))
        tol = _first(r, "tolerance_pct")
        if tol is None and _is_num(r.get("tolerance")):
            tol = 100 * float(r["tolerance"])
        ok = _first(r, "pass", "passed", "ok")
        info = "tolerance" in r and r["tolerance"] is None  # reported, not compared
        rows.append(ValidationRow(config=str(_first(r, "config", "case", "configuration", default="")),
                                  quantity=str(_first(r, "quantity", "name", "what", "metric", default="?")),
                                  unit=str(_first(r, "unit", "units", default="")),
                                  measured=measured, predicted=predicted, error_pct=err, tolerance_pct=tol,
                                  ok=None if ok is None or info else bool(ok), device=_first(r, "device", default=None)))
    for e in meta.get("errors") or []:  # configurations validate could not measure count as failures
        if isinstance(e, dict):
            rows.append(ValidationRow(config=str(e.get("config", "")), quantity=f"error: {e.get('error', '')}", unit="",
                                      measured=None, predicted=None, error_pct=None, tolerance_pct=None, ok=False,
                                      device=None))
    if not rows:
        raise UserError("--validation: the file holds no comparisons")
    device = _first(calib, "device", default=None) or _first(meta, "device", "gpu", "device_name", "accelerator",
                                                             default=None)
    if device == "cpu" and machine:
        device = f"CPU ({machine.get('cpus', '?')} cores, {machine.get('platform', '')})".replace(", )", ")")
    devices = sorted({str(r.device) for r in rows if r.device})
    return Validation(date=_first(meta, "date", "timestamp", "generated", "created", "measured_at", default=None)
                      or machine.get("date"),
                      device=device if device is not None else (", ".join(devices) or None),
                      gpu_run=bool(calib) or meta.get("device") == "cuda",
                      efficiency=_first(calib, "efficiency", default=None) if calib else
                      _first(meta, "efficiency", "measured_efficiency", "calibrated_efficiency", default=None),
                      rows=tuple(rows))


def measured_efficiency(validation: Validation | None) -> float | None:
    """A measured achieved/peak FLOP/s from the validation result, if it holds one (GPU runs only)."""
    if not validation:
        return None
    if isinstance(validation.efficiency, (int, float)):
        return float(validation.efficiency)
    for r in validation.rows:
        q = r.quantity.lower()
        if ("efficiency" in q or "mfu" in q) and isinstance(r.measured, (int, float)):
            return float(r.measured)
    return None


# ---------------------------------------------------------------------------------------------- sections
def _defaults() -> dict[str, Any]:
    return Spec().model_dump(mode="json")


def assumptions(spec: Spec, search: SearchSummary, sensitivity: Sequence[SensitivityRow],
                validation: Validation | None) -> list[dict[str, str]]:
    """Every assumption the numbers rest on: value and where it comes from.

    Args:
        spec: the spec planned.
        search: the settings the layout search ran with.
        sensitivity: the plan's sensitivity rows (their notes say where an assumption comes from).
        validation: the validation result, or None.

    Returns:
        Rows of {"name", "value", "source"}.
    """
    d, s = _defaults(), spec.model_dump(mode="json")
    gpu = spec.hardware.spec

    def src(section: str, key: str, default_src: str) -> str:
        return default_src if s[section][key] == d[section][key] else "your config / flags"

    hw = spec.hardware
    eff = search.efficiency
    eff_src = str(eff.get("source", "")) + ("" if hw.calibration else " (not measured)")
    price_src = "your config / flags" if hw.usd_per_gpu_hour is not None else f"GPU table default ({gpu.name})"
    ds = spec.training.dataset
    if ds:
        from .datasets import get_dataset

        samples_src = get_dataset(ds).note
    else:
        samples_src = src("training", "samples", "soraplan default (the seed: ~10 M Youku-mPLUG clips)")
    rows = [
        {"name": "GPU", "value": gpu.name, "source": "your config / flags" if s["hardware"] != d["hardware"]
         and s["hardware"]["gpu"] != d["hardware"]["gpu"] else "soraplan default"},
        {"name": "Peak dense bf16 throughput", "value": f"{gpu.peak_tflops:g} TFLOP/s per GPU", "source": gpu.source},
        {"name": "HBM capacity and bandwidth", "value": f"{gpu.hbm_gib:g} GiB, {gpu.hbm_tbs:g} TB/s per GPU",
         "source": gpu.source},
        {"name": "GPU-to-GPU bandwidth in a node", "value": f"{gpu.intra_node_gbs:g} GB/s per direction, "
         f"{gpu.gpus_per_node} GPUs per node", "source": gpu.source},
        {"name": "Network bandwidth between nodes", "value": f"{gpu.inter_node_gbs:g} GB/s per GPU per direction",
         "source": gpu.source},
    ]
    for key, label, unit in (("gemm", "Matrix-multiply (GEMM) speed", "of peak FLOP/s"),
                             ("attention", "Attention-kernel speed", "of peak FLOP/s"),
                             ("hbm", "Memory-bound ops", "of peak HBM bandwidth"),
                             ("comm", "Collectives (NCCL)", "of nominal link bandwidth")):
        if isinstance(eff.get(key), (int, float)):
            rows.append({"name": label, "value": f"{eff[key]:.0%} {unit}", "source": eff_src})
    rows += [
        {"name": "Price per GPU-hour", "value": f"${hw.price:,.2f}", "source": price_src},
        {"name": "Memory reserved per GPU (CUDA context, NCCL, fragmentation)", "value": f"{hw.buffer_gib:g} GiB",
         "source": src("hardware", "buffer_gib", "soraplan default")},
    ]
    lo, hi = search.global_batch_range
    rows += [
        {"name": "Memory headroom kept free", "value": f"{search.headroom:.0%} of HBM",
         "source": "layout search setting (--headroom)"},
        {"name": "Largest tensor-parallel group", "value": f"{search.max_tp_in_node} GPUs (inside one node)",
         "source": "layout search setting (--max-tp-in-node)"},
        {"name": "Global batch (clips per step)", "value": f"{lo:,} to {hi:,}",
         "source": "layout search setting (--global-batch-range / --global-batch)"},
        {"name": "Attention patterns searched", "value": ", ".join(map(str, search.attentions)),
         "source": "your spec (+ windows with --allow-window)"},
    ]
    rows += [
        {"name": "Training samples (clips)", "value": f"{spec.training.samples:,}", "source": samples_src},
        {"name": "Epochs (passes over the samples)", "value": f"{spec.training.epochs:g}",
         "source": src("training", "epochs", "soraplan default")},
        {"name": "Clip geometry", "value": f"{spec.video.frames} frames at {spec.video.height}×{spec.video.width}, "
         f"{spec.video.fps:g} fps", "source": src("video", "frames", "soraplan default (the seed: 40 s at 256²)")},
        {"name": "Sequence length", "value": f"{spec.seq_len:,} tokens per clip",
         "source": "computed from the clip geometry, VAE strides and patch size"},
        {"name": "Model", "value": f"{spec.model.name}: {spec.model.layers} layers × {spec.model.hidden} hidden, "
         f"{spec.model.heads} heads", "source": "preset / your config"},
        {"name": "Precision", "value": f"params {spec.kernels.param_dtype}, activations {spec.kernels.activation_dtype}, "
         f"grads {spec.kernels.grad_dtype}, Adam state {spec.kernels.optimizer_dtype}",
         "source": src("kernels", "param_dtype", "soraplan default (Megatron mixed precision)")},
        {"name": "Attention kernel", "value": spec.kernels.attention_kernel,
         "source": src("kernels", "attention_kernel", "soraplan default")},
        {"name": "Failures, restarts, checkpoint time", "value": "not in the days; see the sensitivity section",
         "source": "soraplan"},
    ]
    for r in sensitivity:  # the plan's notes on its own assumptions (e.g. where efficiencies come from)
        if r.note:
            rows.append({"name": f"Sensitivity: {r.assumption}", "value": f"{r.base}", "source": str(r.note)})
    if validation is None:
        rows.append({"name": "Validation", "value": "none", "source": "no `soraplan validate --json` result was given"})
    return rows


def count_rows(plan: Plan, deadline_days: float | None) -> list[dict[str, Any]]:
    """One row per GPU count searched: its best layout's days, hours and cost, or why nothing fits."""
    best_gpus = plan.best.gpus if plan.best else None
    rows = []
    for c in plan.gpu_counts:
        top = c.ranked[0] if c.ranked else None
        rows.append({"gpus": c.gpus, "gpus_used": top.gpus_used if top else None, "fits": top is not None,
                     "days": top.train.days if top else None,
                     "gpu_hours": top.train.gpu_hours if top else None,
                     "cost_usd": top.train.cost_usd if top else None,
                     "layout": layout_text(top) if top else (c.message or "no layout fits"),
                     "recommended": bool(top) and c.gpus == best_gpus,
                     "meets_deadline": None if deadline_days is None or top is None else top.train.days <= deadline_days,
                     "evaluated": c.evaluated, "feasible": c.feasible, "rejected": c.rejected,
                     "why_best": c.why_best})
    return rows


def top_layouts(plan: Plan) -> tuple[RankedLayout, ...]:
    """The best GPU count's ranked layouts (up to TOP_LAYOUTS); the recommendation alone if that count is missing."""
    best = plan.best
    if not best:
        return ()
    for c in plan.gpu_counts:
        if c.gpus == best.gpus and c.ranked:
            return c.ranked[:TOP_LAYOUTS]
    return (best,)


def step_breakdown(tops: Sequence[RankedLayout]) -> dict[str, Any]:
    """Seconds per step by term (the plan's step terms, named in plain words by the plan) for the top layouts."""
    terms = [k for k in TERM_WORDS if any(_is_num(v := getattr(e.step, k)) and v > 0 for e in tops)]
    return {"terms": [{"key": k, "label": TERM_WORDS[k]} for k in terms],
            "layouts": [{k: getattr(e.step, k) for k in terms} | {"time_s": e.step.time_s} for e in tops]}


def _is_num(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _swing_days(r: SensitivityRow) -> float:
    lo, hi = r.days_low, r.days_high
    return abs(hi - lo) if _is_num(lo) and _is_num(hi) else 0.0


def sensitivity_rows(rows: Sequence[SensitivityRow] | None) -> list[SensitivityRow]:
    """The plan's sensitivity rows, the smallest swing in days first (largest last: the top bar of a tornado)."""
    return sorted(rows or (), key=_swing_days)


def attention_rows(best_spec: Spec | None) -> list[dict[str, Any]]:
    """Full vs window vs spatial-temporal at the recommended layout (the planner's attention_comparison)."""
    if best_spec is None:
        return []
    rows = attention_comparison(best_spec)
    full = next((r for r in rows if r["attention"] == "full"), None)
    for r in rows:
        r["days_saved"] = (full["days"] - r["days"]) if full else None
    return rows


def attention_note(rows: list[dict[str, Any]], best: BestLayout | None, sensitivity: Sequence[SensitivityRow]) -> str:
    """Why a pattern is missing from the comparison, and what the plan says about window attention instead."""
    if not best or any(str(r["attention"]).startswith("window") for r in rows):
        return ""
    note = (f"Window attention is not shown at this layout: its windows do not split evenly over the "
            f"{best.cp} context-parallel ranks." if best.cp > 1 else "")
    w = next((r for r in sensitivity if "window" in r.assumption.lower() and _is_num(r.days_high)), None)
    if w and w.days_low is not None and w.days_high is not None:
        gain = w.days_low - w.days_high
        note += (f" With the layout searched again for window attention ({w.high}), the plan gives "
                 + (f"{w.days_high:.1f} days instead of {w.days_low:.1f}." if gain >= 0.05
                    else f"no gain ({w.days_high:.1f} days)."))
    return note.strip()


def budget_view(budget: Budget | None, best: BestLayout | None) -> BudgetView:
    """The plan's training budget: per stage at the recommended GPU count, totals and passes per GPU count."""
    gpus = best.gpus if best else None
    if budget is None:
        return BudgetView(curriculum=False, gpus=gpus, stages=(), totals=(), passes=(), pass_samples=None,
                          statement="")
    stages = tuple(StageAtBest(stage=st, at_best=next((r for r in st.per_gpus if r.gpus == gpus), None))
                   for st in budget.stages)
    return BudgetView(curriculum=budget.curriculum, gpus=gpus, stages=stages, totals=budget.totals,
                      passes=budget.passes, pass_samples=budget.pass_samples, statement=budget.statement or "")


def backtest_risk(gpu: str, speed: str, mfu_txt: str, source: str) -> dict[str, str]:
    """The speed risk when no measurement is given: what the backtest against published runs found for this GPU.

    Args:
        gpu: the GPU's table name.
        speed: the kernel efficiencies in words.
        mfu_txt: " (overall MFU x%)" or "".
        source: where the efficiencies come from.

    Returns:
        One risk row {"level", "title", "text"}.
    """
    from .backtest import gpu_summary

    s = gpu_summary(gpu)
    if not s.n or s.median_abs_error is None or s.worst_abs_error is None or s.bias is None:
        return {"level": "warn", "title": f"Speed not backed by a published {gpu} run",
                "text": f"The step time assumes {speed}{mfu_txt}, from {source}. No published training run on {gpu} "
                        "is in soraplan's backtest corpus, so nothing checks these numbers on this GPU: if the real "
                        "figure is lower, every day and dollar here grows in proportion."}
    runs = "run" if s.n == 1 else "runs"
    return {"level": "ok" if s.median_abs_error <= 0.15 else "warn",
            "title": f"Speed within {s.median_abs_error:.0%} (median) on {s.n} published {gpu} {runs}",
            "text": f"The step time assumes {speed}{mfu_txt}, from {source}. On {s.n} published training {runs} on "
                    f"{gpu} soraplan was within {s.median_abs_error:.0%} of the published throughput (median; worst "
                    f"{s.worst_abs_error:.0%}, bias {s.bias:+.1%}; `soraplan backtest --gpu {gpu}`). A new model or "
                    "framework can miss by more: if the real figure is lower, every day and dollar here grows in "
                    "proportion."}


def risks(best: BestLayout | None, plan: Plan, validation: Validation | None,
          deadline_days: float | None, gpu: str = "") -> list[dict[str, str]]:
    """Plain-words risk flags: level ok | warn | bad, a title and one or two sentences.

    Args:
        best: the recommended layout, or None when nothing fits.
        plan: the plan (GPU counts' messages, search settings, sensitivity rows).
        validation: the validation result, or None.
        deadline_days: the deadline, or None.
        gpu: the GPU's table name (the backtest's figures for it back the speed risk).

    Returns:
        Rows of {"level", "title", "text"}.
    """
    out: list[dict[str, str]] = []
    if not best:
        msgs = " ".join(c.message[:1].upper() + c.message[1:] for c in plan.gpu_counts if c.message)
        return [{"level": "bad", "title": "Nothing fits",
                 "text": "No layout fits at any of the GPU counts asked for. " + (msgs or
                         "Use more GPUs, a GPU with more memory, recompute, or shorter / smaller clips.")}]
    mem = best.memory_gib
    headroom = 1 - mem.total / mem.capacity
    want = plan.search.headroom
    level = "bad" if headroom < 0 else "warn" if headroom < max(want, HEADROOM_WARN) else "ok"
    out.append({"level": level, "title": f"Memory headroom {headroom:.0%}",
                "text": f"The recommended layout uses {mem.total:.1f} of {mem.capacity:.0f} GiB per GPU. "
                        + ("It does not fit." if level == "bad" else
                           "Little room for fragmentation or longer clips: expect out-of-memory risk." if level == "warn" else
                           "Room for allocator fragmentation and spikes.")})
    eff = plan.search.efficiency
    mfu = best.step.mfu
    measured = measured_efficiency(validation)
    mfu_txt = f" (overall MFU {mfu:.0%})" if _is_num(mfu) else ""
    speed = (f"matrix multiplies at {eff['gemm']:.0%} and attention at {eff['attention']:.0%} of peak FLOP/s"
             if _is_num(eff.get("gemm")) and _is_num(eff.get("attention")) else "the stated kernel efficiencies")
    if measured is None:
        out.append(backtest_risk(gpu, speed, mfu_txt, str(eff.get("source", "the efficiency table"))))
    else:
        assumed = best.step.efficiency or eff.get("gemm")
        gap = measured / assumed - 1 if _is_num(assumed) and assumed else 0.0
        lvl = "ok" if gap >= -0.10 else "warn" if gap >= -0.25 else "bad"
        out.append({"level": lvl, "title": f"Speed measured at {measured:.0%} of peak",
                    "text": f"The plan assumes {speed}{mfu_txt}; the measurement gave {measured:.0%} "
                            f"({gap:+.0%} relative to the plan's {assumed:.0%})."})
    restart = next((r for r in plan.sensitivity or ()
                    if any(w in r.assumption.lower() for w in ("restart", "failure"))), None)
    if restart and restart.days_low is not None and _is_num(restart.days_high):
        out.append({"level": "warn", "title": "Failures and restarts not in the plan",
                    "text": f"The days assume no failures. With {restart.high} of the time lost to failures, restarts "
                            f"and checkpoints, the schedule grows from {restart.days_low:.1f} to "
                            f"{restart.days_high:.1f} days" + (f" and the cost to ${restart.cost_high:,.0f}"
                                                               if _is_num(restart.cost_high) else "") + "."})
    else:
        out.append({"level": "warn", "title": "Failures and restarts not included",
                    "text": f"The days assume {best.gpus_used} GPUs run without failures, "
                            "restarts or time lost to checkpoints. Real runs at this scale lose time to each; add a margin."})
    if deadline_days is not None:
        days = best.train.days
        out.append({"level": "ok" if days <= deadline_days else "bad",
                    "title": f"Deadline {deadline_days:g} days: " + ("met" if days <= deadline_days else "missed"),
                    "text": f"The recommendation finishes in {days:.1f} days."})
    return out


# ------------------------------------------------------------------------------------------------ gather
def gather(spec: Spec, gpu_counts: Sequence[int] | None = None, deadline_days: float | None = None,
           validation: Validation | None = None, objective: str | None = None, plan: Plan | None = None,
           options: Any = None, curriculum: Any = None, progress: Any = None) -> dict[str, Any]:
    """Everything the report shows.

    Args:
        spec: the spec planned.
        gpu_counts: GPU counts to compare (default: the spec's compare_gpus).
        deadline_days: draw this deadline and flag counts that miss it.
        validation: the `soraplan validate --json` result (`normalize_validation`), or None.
        objective: the plan's objective (default `time`).
        plan: the planner's Plan for these counts; None runs the planner.
        options, curriculum, progress: passed to the planner when it runs.

    Returns:
        The report data that `cli/report_view.py` renders: one entry per section; the page's own rows are
        JSON-ready dicts, the plan's parts (`top_layouts`, `sensitivity`, `budget`) its typed objects.
    """
    counts = list(gpu_counts or spec.training.compare_gpus)
    if not counts or any(n < 1 for n in counts):
        raise UserError("--gpus: give positive GPU counts, e.g. 200,300,400")
    if deadline_days is not None and deadline_days <= 0:
        raise UserError("--deadline-days: must be positive")
    if plan is None:
        plan = run_planner(spec, counts, objective=objective or "time", deadline_days=deadline_days, options=options,
                           curriculum=curriculum, progress=progress)
    est = estimate(spec, compare=False)
    best = plan.best
    best_spec = spec_for_layout(spec, best) if best else None
    gpu = spec.hardware.spec
    summary = None
    if best:
        used = best.gpus_used
        summary = {"gpu": gpu.name, "gpus": best.gpus, "gpus_used": used, "days": best.train.days,
                   "gpu_hours": best.train.gpu_hours, "cost_usd": best.train.cost_usd,
                   "layout": {k: getattr(best, k) for k in LAYOUT_KEYS}, "layout_text": layout_text(best),
                   "step_s": best.step.time_s, "mfu": best.step.mfu, "samples_per_s": best.step.samples_per_s,
                   "memory_total_gib": best.memory_gib.total, "capacity_gib": best.memory_gib.capacity,
                   "nodes": math.ceil(used / gpu.gpus_per_node), "best_reason": plan.best_reason,
                   "why_best": _why(plan.gpu_counts, best)}
    sensitivity = plan.sensitivity or ()
    return {
        "title": spec.name,
        "model": spec.model.name,
        "objective": plan.objective,
        "deadline_days": deadline_days,
        "gpu": {"name": gpu.name, "hbm_gib": gpu.hbm_gib, "peak_tflops": gpu.peak_tflops,
                "gpus_per_node": gpu.gpus_per_node, "usd_per_hour": spec.hardware.price},
        "sequence": {"tokens": est.sequence_length, "text": est.sequence["text"]},
        "params_total": est.params.total,
        "samples": spec.training.samples, "epochs": spec.training.epochs,
        "summary": summary,
        "risks": risks(best, plan, validation, deadline_days, gpu.name),
        "counts": count_rows(plan, deadline_days),
        "top_layouts": (tops := top_layouts(plan)),
        "step_breakdown": step_breakdown(tops),
        "grid": rank_grid(best.tp, best.pp, best.cp, best.dp, gpu.gpus_per_node) if best else None,
        "attention": (att := attention_rows(best_spec)),
        "attention_note": attention_note(att, best, sensitivity),
        "sensitivity": sensitivity_rows(sensitivity),
        "budget": budget_view(plan.budget, best),
        "validation": validation,
        "assumptions": assumptions(spec, plan.search, sensitivity, validation),
    }


def _why(counts: Sequence[CountSearch], best: BestLayout) -> str:
    """Why the best layout beat the runner-up at the recommended GPU count."""
    for c in counts:
        if c.gpus == best.gpus:
            return c.why_best or ""
    return ""
