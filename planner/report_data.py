"""Every number the HTML capacity report shows, gathered from the planner as one JSON-ready dict.

Pure: no plotly, no file or network access. The renderer (`soraplan/cli/report_view.py`) only formats what
this module returns; it never computes a planning number itself. Sources, in order of preference:
  - `soraplan.planner.search.plan(spec, gpu_counts, ...)` (issue D): ranked layouts per GPU count, the
    recommendation, the curriculum budget and the sensitivity of wall-clock days to single assumptions;
  - `soraplan.planner.estimate` for sequence arithmetic, parameters, FLOPs and the attention comparison
    (evaluated at the recommended layout);
  - a `soraplan validate --json` result (issue C), passed in as a dict, for the evidence section.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

from .estimate import attention_comparison, estimate
from .errors import UserError
from .spec import Spec

MEMORY_PARTS = ("weights", "grads", "optimizer", "activations", "buffers")
LAYOUT_KEYS = ("tp", "pp", "vpp", "cp", "dp", "micro_batch", "global_batch", "sequence_parallel", "recompute",
               "distributed_optimizer", "attention")
TOP_LAYOUTS = 5
HEADROOM_WARN = 0.10  # the plan's default memory headroom constraint (issue D): less than this is flagged


# ----------------------------------------------------------------------------------------------- plan seam
def plan_function() -> Callable[..., dict[str, Any]] | None:
    """D's `plan` when this checkout has it, else None (the report then shows the given layout only)."""
    try:
        from .search import plan  # type: ignore[attr-defined]
    except ImportError as e:  # the module not built yet in this checkout
        if getattr(e, "name", None) not in (f"{__package__}.search", None):
            raise
        return None
    return plan


def run_plan(spec: Spec, gpu_counts: list[int], deadline_days: float | None = None,
             objective: str | None = None) -> tuple[dict[str, Any], str]:
    """(plan dict, source): D's layout search, or the spec's own layout scaled to each count as a stand-in."""
    fn = plan_function()
    if fn is None:
        return plan_from_estimate(spec, gpu_counts), "given-layout"
    kwargs: dict[str, Any] = {}
    params = inspect.signature(fn).parameters
    if deadline_days is not None and "deadline_days" in params:
        kwargs["deadline_days"] = deadline_days
    if objective is not None and "objective" in params:
        kwargs["objective"] = objective
    return fn(spec, gpu_counts, **kwargs), "search"


def spec_for_layout(spec: Spec, entry: dict[str, Any], gpus: int) -> Spec:
    """The spec with a plan entry's layout on `gpus` GPUs (to ask the planner about that layout)."""
    data = spec.model_dump()
    par = data["parallel"]
    for key in ("tp", "pp", "vpp", "cp", "micro_batch", "sequence_parallel", "recompute", "distributed_optimizer"):
        if key in entry:
            par[key] = entry[key]
    par["dp"], par["gpus"] = entry.get("dp"), gpus
    if par["dp"] is None:
        par["gpus"] = gpus
    par["global_batch"] = entry.get("global_batch")
    par["recompute_layers"] = entry.get("recompute_layers")
    if entry.get("attention"):
        data["model"]["attention"] = entry["attention"]
    return Spec.model_validate(data)


def _entry_from_estimate(est: dict[str, Any]) -> dict[str, Any]:
    par = est["spec"]["parallel"]
    entry = {k: par[k] for k in LAYOUT_KEYS if k in par}
    entry["global_batch"] = est["step"]["terms"]["samples_per_step"]
    entry["attention"] = est["spec"]["model"]["attention"]
    entry["memory_gib"] = dict(est["memory_gib"])
    entry["step"] = dict(est["step"]["terms"])
    entry["train"] = {k: est["train"][k] for k in ("days", "gpu_hours", "cost_usd")}
    return entry


def plan_from_estimate(spec: Spec, gpu_counts: list[int]) -> dict[str, Any]:
    """A plan-shaped dict (issue D's contract) for the spec's own layout at each GPU count, from `estimate`."""
    from .train import with_gpus

    rows = []
    for n in gpu_counts:
        s2 = with_gpus(spec, n)
        if s2 is None:
            rows.append({"gpus": n, "ranked": [], "rejected": {"fewer GPUs than one model replica": 1}, "evaluated": 1,
                         "why_best": ""})
            continue
        e = estimate(s2, compare=False)
        entry = _entry_from_estimate(e)
        fits = bool(entry["memory_gib"]["fits"])
        rows.append({"gpus": e["spec"]["parallel"]["gpus"], "ranked": [entry] if fits else [],
                     "rejected": {} if fits else {"memory": 1}, "evaluated": 1,
                     "why_best": "the layout given in the spec (no layout search in this checkout)"})
    feasible = [(r["gpus"], r["ranked"][0]) for r in rows if r["ranked"]]
    best = None
    if feasible:
        g, entry = min(feasible, key=lambda ge: ge[1]["train"]["days"])
        best = dict(entry, gpus=g)
    out = {"spec": spec.model_dump(mode="json"), "objective": "time", "gpu_counts": rows, "best": best,
           "budget": {}, "sensitivity": []}
    if best:
        s_best = spec_for_layout(spec, best, best["gpus"])
        out["sensitivity"] = sensitivity_from_planner(s_best)
        out["budget"] = {"stages": [{"name": spec.training.dataset or "all clips", "frames": spec.video.frames,
                                     "resolution": f"{spec.video.height}x{spec.video.width}",
                                     "samples": spec.training.samples, "epochs": spec.training.epochs,
                                     "gpu_hours": best["train"]["gpu_hours"], "days": best["train"]["days"],
                                     "cost_usd": best["train"]["cost_usd"]}]}
    return out


def _vary(spec: Spec, section: str, key: str, value: Any) -> Spec:
    data = spec.model_dump()
    data[section][key] = value
    return Spec.model_validate(data)


def sensitivity_from_planner(spec: Spec) -> list[dict[str, Any]]:
    """Days when one assumption moves (the planner's train_budget on a varied spec); used without D's search."""
    from .train import train_budget

    from .step import op_efficiency

    hw, tr = spec.hardware, spec.training
    gemm = op_efficiency(spec).gemm
    cases = [("GEMM and attention efficiency (blanket)", "hardware", "efficiency", gemm * 0.75, min(1.0, gemm * 1.25)),
             ("price per GPU-hour (USD)", "hardware", "usd_per_gpu_hour", hw.price * 0.75, hw.price * 1.25),
             ("epochs", "training", "epochs", tr.epochs * 0.5, tr.epochs * 2)]
    rows = []
    for name, section, key, lo, hi in cases:
        b_lo, b_hi = train_budget(_vary(spec, section, key, lo)), train_budget(_vary(spec, section, key, hi))
        rows.append({"assumption": name, "low": lo, "high": hi, "days_low": b_lo.days, "days_high": b_hi.days,
                     "cost_low": b_lo.cost_usd, "cost_high": b_hi.cost_usd})
    return rows


# ------------------------------------------------------------------------------------------------ helpers
def layout_text(e: dict[str, Any]) -> str:
    """'TP 8 x PP 2 (vpp 2) x CP 1 x DP 16' plus the options, in plain words."""
    pp = f"PP {e.get('pp', 1)}" + (f" (virtual {e['vpp']})" if e.get("vpp", 1) > 1 else "")
    head = f"TP {e.get('tp', 1)} × {pp} × CP {e.get('cp', 1)} × DP {e.get('dp', 1)}"
    opts = [f"micro-batch {e.get('micro_batch', 1)}"]
    if e.get("global_batch") is not None:
        opts.append(f"global batch {e['global_batch']}")
    if e.get("sequence_parallel"):
        opts.append("sequence parallel")
    rc = e.get("recompute", "none")
    opts.append("no recompute" if rc == "none" else f"{rc} recompute")
    if e.get("distributed_optimizer"):
        opts.append("distributed optimizer")
    if e.get("attention") and e["attention"] != "full":
        opts.append(f"{e['attention']} attention")
    return f"{head} ({', '.join(opts)})"


def rank_grid(tp: int, pp: int, cp: int, dp: int, gpus_per_node: int, max_nodes: int = 256) -> dict[str, Any]:
    """GPUs laid out on nodes in Megatron's default rank order tp-cp-dp-pp (TP fastest, so TP stays in a node).

    rank = tp_rank + tp*(cp_rank + cp*(dp_rank + dp*pp_rank)); node = rank // gpus_per_node.
    """
    world = tp * pp * cp * dp
    nodes = math.ceil(world / gpus_per_node)
    shown = min(nodes, max_nodes)
    cells = []
    for node in range(shown):
        row = []
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


def normalize_validation(raw: Any) -> dict[str, Any] | None:
    """The rows of a `soraplan validate --json` result (quantity, measured, predicted, error %, pass) + date/device."""
    if raw is None:
        return None
    meta: dict[str, Any] = raw if isinstance(raw, dict) else {}
    rows_raw = raw if isinstance(raw, list) else _first(meta, "results", "rows", "comparisons", "checks", default=[])
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
        if err is None and isinstance(_first(r, "error", "rel_error"), (int, float)):
            err = 100 * float(_first(r, "error", "rel_error"))
        ok = _first(r, "pass", "passed", "ok")
        rows.append({"config": _first(r, "config", "case", "configuration", default=""),
                     "quantity": str(_first(r, "quantity", "name", "what", "metric", default="?")),
                     "unit": str(_first(r, "unit", "units", default="")),
                     "measured": measured, "predicted": predicted, "error_pct": err,
                     "tolerance_pct": _first(r, "tolerance_pct", "tolerance"),
                     "pass": None if ok is None else bool(ok), "device": _first(r, "device", default=None)})
    if not rows:
        raise UserError("--validation: the file holds no comparisons")
    device = _first(meta, "device", "gpu", "device_name", "accelerator", default=None)
    devices = sorted({str(r["device"]) for r in rows if r["device"]})
    return {"date": _first(meta, "date", "timestamp", "generated", "created", "measured_at", default=None),
            "device": device if device is not None else (", ".join(devices) or None),
            "soraplan_version": _first(meta, "version", "soraplan_version", default=None),
            "efficiency": _first(meta, "efficiency", "measured_efficiency", "calibrated_efficiency", default=None),
            "rows": rows, "passed": sum(1 for r in rows if r["pass"] is True),
            "failed": sum(1 for r in rows if r["pass"] is False)}


def measured_efficiency(validation: dict[str, Any] | None) -> float | None:
    """A measured achieved/peak FLOP/s from the validation result, if it holds one (GPU runs only)."""
    if not validation:
        return None
    if isinstance(validation.get("efficiency"), (int, float)):
        return float(validation["efficiency"])
    for r in validation["rows"]:
        q = r["quantity"].lower()
        if ("efficiency" in q or "mfu" in q) and isinstance(r["measured"], (int, float)):
            return float(r["measured"])
    return None


# ---------------------------------------------------------------------------------------------- sections
def _defaults() -> dict[str, Any]:
    return Spec().model_dump(mode="json")


def assumptions(spec: Spec, plan: dict[str, Any], validation: dict[str, Any] | None) -> list[dict[str, str]]:
    """Every assumption the numbers rest on: value and where it comes from."""
    d, s = _defaults(), spec.model_dump(mode="json")
    gpu = spec.hardware.spec

    def src(section: str, key: str, default_src: str) -> str:
        return default_src if s[section][key] == d[section][key] else "your config / flags"

    hw = spec.hardware
    from .step import op_efficiency

    eff = op_efficiency(spec)
    eff_src = eff.source + ("" if hw.calibration else " (not measured)")
    price_src = "your config / flags" if hw.usd_per_gpu_hour is not None else f"GPU table default ({gpu.name})"
    ds = spec.training.dataset
    if ds:
        from .datasets import get_dataset

        samples_src = get_dataset(ds).note
    else:
        samples_src = src("training", "samples", "soraplan default (the seed: ~10 M Youku-mPLUG clips)")
    rows = [
        {"name": "GPU", "value": gpu.name, "source": "your config / flags" if s["hardware"]["gpu"] != d["hardware"]["gpu"]
         else "soraplan default"},
        {"name": "Peak dense bf16 throughput", "value": f"{gpu.peak_tflops:g} TFLOP/s per GPU", "source": gpu.source},
        {"name": "HBM capacity", "value": f"{gpu.hbm_gib:g} GiB per GPU", "source": gpu.source},
        {"name": "HBM bandwidth", "value": f"{gpu.hbm_tbs:g} TB/s", "source": gpu.source},
        {"name": "GPU-to-GPU bandwidth in a node", "value": f"{gpu.intra_node_gbs:g} GB/s per direction", "source": gpu.source},
        {"name": "Network bandwidth between nodes", "value": f"{gpu.inter_node_gbs:g} GB/s per GPU per direction",
         "source": gpu.source},
        {"name": "GPUs per node", "value": str(gpu.gpus_per_node), "source": gpu.source},
        {"name": "Matrix-multiply (GEMM) speed, fraction of peak FLOP/s", "value": f"{eff.gemm:.0%}", "source": eff_src},
        {"name": "Attention-kernel speed, fraction of peak FLOP/s", "value": f"{eff.attention:.0%}", "source": eff_src},
        {"name": "Memory-bound ops, fraction of peak HBM bandwidth", "value": f"{eff.hbm:.0%}", "source": eff_src},
        {"name": "Collectives, fraction of nominal link bandwidth", "value": f"{eff.comm:.0%}", "source": eff_src},
        {"name": "Price per GPU-hour", "value": f"${hw.price:,.2f}", "source": price_src},
        {"name": "Memory reserved per GPU (CUDA context, NCCL, fragmentation)", "value": f"{hw.buffer_gib:g} GiB",
         "source": src("hardware", "buffer_gib", "soraplan default")},
        {"name": "Training samples (clips)", "value": f"{spec.training.samples:,}", "source": samples_src},
        {"name": "Epochs (passes over the samples)", "value": f"{spec.training.epochs:g}",
         "source": src("training", "epochs", "soraplan default")},
        {"name": "Clip geometry", "value": f"{spec.video.frames} frames at {spec.video.height}×{spec.video.width}, "
         f"{spec.video.fps:g} fps", "source": src("video", "frames", "soraplan default (the seed: 40 s at 256²)")},
        {"name": "Sequence length", "value": f"{spec.seq_len:,} tokens per clip", "source": "computed from the clip geometry,"
         " VAE strides and patch size"},
        {"name": "Model", "value": f"{spec.model.name}: {spec.model.layers} layers × {spec.model.hidden} hidden, "
         f"{spec.model.heads} heads", "source": "preset / your config"},
        {"name": "Precision", "value": f"params {spec.kernels.param_dtype}, activations {spec.kernels.activation_dtype}, "
         f"grads {spec.kernels.grad_dtype}, Adam state {spec.kernels.optimizer_dtype}",
         "source": src("kernels", "param_dtype", "soraplan default (Megatron mixed precision)")},
        {"name": "Attention kernel", "value": spec.kernels.attention_kernel,
         "source": src("kernels", "attention_kernel", "soraplan default")},
        {"name": "Failures, restarts, checkpoint time", "value": "not in the wall-clock days unless listed below",
         "source": "soraplan"},
    ]
    for a in plan.get("assumptions", []) or []:  # the plan's own stated assumptions (issue D), if it lists them
        if isinstance(a, dict) and "name" in a:
            rows.append({"name": str(a["name"]), "value": str(a.get("value", "")), "source": str(a.get("source", "plan"))})
    if validation is None:
        rows.append({"name": "Validation", "value": "none", "source": "no `soraplan validate --json` result was given"})
    return rows


def count_rows(plan: dict[str, Any], deadline_days: float | None) -> list[dict[str, Any]]:
    best = plan.get("best") or {}
    rows = []
    for c in plan.get("gpu_counts", []):
        top = c["ranked"][0] if c.get("ranked") else None
        rows.append({"gpus": c["gpus"], "fits": top is not None,
                     "days": top["train"]["days"] if top else None,
                     "gpu_hours": top["train"]["gpu_hours"] if top else None,
                     "cost_usd": top["train"]["cost_usd"] if top else None,
                     "layout": layout_text(top) if top else "no layout fits",
                     "recommended": bool(top) and c["gpus"] == best.get("gpus"),
                     "meets_deadline": None if deadline_days is None or top is None else top["train"]["days"] <= deadline_days,
                     "evaluated": c.get("evaluated"), "rejected": c.get("rejected", {}), "why_best": c.get("why_best", "")})
    return rows


def top_layouts(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The best GPU count's ranked layouts (up to TOP_LAYOUTS), each with a one-line description."""
    best = plan.get("best")
    if not best:
        return []
    for c in plan.get("gpu_counts", []):
        if c["gpus"] == best.get("gpus") and c.get("ranked"):
            return [dict(e, gpus=c["gpus"], text=layout_text(e)) for e in c["ranked"][:TOP_LAYOUTS]]
    return [dict(best, text=layout_text(best))]


def sensitivity_rows(plan: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [dict(r) for r in plan.get("sensitivity", []) or [] if isinstance(r, dict)]
    for r in rows:
        lo, hi = r.get("days_low"), r.get("days_high")
        r["swing_days"] = abs(hi - lo) if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else 0.0
    return sorted(rows, key=lambda r: r["swing_days"])  # largest last: the top bar of a tornado


def attention_rows(best_spec: Spec | None) -> list[dict[str, Any]]:
    """Full vs window vs spatial-temporal at the recommended layout (the planner's attention_comparison)."""
    if best_spec is None:
        return []
    rows = attention_comparison(best_spec)
    full = next((r for r in rows if r["attention"] == "full"), None)
    for r in rows:
        r["days_saved"] = (full["days"] - r["days"]) if full else None
        r["flops_saved_frac"] = (1 - r["forward_flops"] / full["forward_flops"]) if full else None
    return rows


def risks(spec: Spec, best: dict[str, Any] | None, validation: dict[str, Any] | None, deadline_days: float | None,
          plan: dict[str, Any]) -> list[dict[str, str]]:
    """Plain-words risk flags: level ok | warn | bad, a title and one or two sentences."""
    out: list[dict[str, str]] = []
    if not best:
        return [{"level": "bad", "title": "Nothing fits",
                 "text": "No layout fits in GPU memory at any of the GPU counts asked for. Use more GPUs, a GPU with more "
                         "memory, recompute, or shorter / smaller clips."}]
    mem = best["memory_gib"]
    headroom = 1 - mem["total"] / mem["capacity"]
    level = "bad" if headroom < 0 else "warn" if headroom < HEADROOM_WARN else "ok"
    out.append({"level": level, "title": f"Memory headroom {headroom:.0%}",
                "text": f"The recommended layout uses {mem['total']:.1f} of {mem['capacity']:.0f} GiB per GPU. "
                        + ("It does not fit." if level == "bad" else
                           "Little room for fragmentation or longer clips: expect out-of-memory risk." if level == "warn" else
                           "Comfortable room for allocator fragmentation and spikes.")})
    from .step import op_efficiency

    op = op_efficiency(spec)
    eff = best.get("step", {}).get("efficiency") or op.gemm
    mfu = best.get("step", {}).get("mfu")
    measured = measured_efficiency(validation)
    mfu_txt = f" (overall MFU {mfu:.0%})" if isinstance(mfu, (int, float)) else ""
    if measured is None:
        out.append({"level": "warn", "title": "Speed assumed, not measured",
                    "text": f"Step time assumes matrix multiplies at {op.gemm:.0%} and attention at {op.attention:.0%} of "
                            f"peak FLOP/s{mfu_txt}. No measurement backs it: if the real figure is lower, every day and "
                            "dollar here grows in proportion."})
    else:
        gap = measured / eff - 1
        lvl = "ok" if gap >= -0.10 else "warn" if gap >= -0.25 else "bad"
        out.append({"level": lvl, "title": f"Speed measured at {measured:.0%} of peak",
                    "text": f"The plan assumes {eff:.0%}{mfu_txt}; the measurement gave {measured:.0%} "
                            f"({gap:+.0%} relative)."})
    restart = next((r for r in plan.get("sensitivity", []) or []
                    if any(w in str(r.get("assumption", "")).lower() for w in ("restart", "failure"))), None)
    if restart:
        out.append({"level": "warn", "title": "Failures and restarts",
                    "text": f"{restart['assumption']}: between {restart['low']} and {restart['high']} this moves the "
                            f"schedule from {restart['days_low']:.1f} to {restart['days_high']:.1f} days."})
    else:
        out.append({"level": "warn", "title": "Failures and restarts not included",
                    "text": f"The days assume {best.get('gpus', '?')} GPUs run without failures, restarts or time lost "
                            "to checkpoints. Real runs at this scale lose time to each; add a margin."})
    if deadline_days is not None:
        days = best["train"]["days"]
        out.append({"level": "ok" if days <= deadline_days else "bad",
                    "title": f"Deadline {deadline_days:g} days: " + ("met" if days <= deadline_days else "missed"),
                    "text": f"The recommendation finishes in {days:.1f} days."})
    return out


# ------------------------------------------------------------------------------------------------ gather
def gather(spec: Spec, gpu_counts: list[int] | None = None, deadline_days: float | None = None,
           validation: Any = None, objective: str | None = None, plan: dict[str, Any] | None = None,
           plan_source: str | None = None) -> dict[str, Any]:
    """Everything the report shows. `plan` may be given (e.g. a `soraplan plan --json` result); else it is run."""
    counts = list(gpu_counts or spec.training.compare_gpus)
    if not counts or any(n < 1 for n in counts):
        raise UserError("--gpus: give positive GPU counts, e.g. 200,300,400")
    if deadline_days is not None and deadline_days <= 0:
        raise UserError("--deadline-days: must be positive")
    if plan is None:
        plan, plan_source = run_plan(spec, counts, deadline_days, objective)
    val = normalize_validation(validation)
    est = estimate(spec, compare=False)
    best = plan.get("best")
    best_spec = spec_for_layout(spec, best, best["gpus"]) if best else None
    best_est = estimate(best_spec, compare=False) if best_spec is not None else None
    gpu = spec.hardware.spec
    summary = None
    if best:
        summary = {"gpu": gpu.name, "gpus": best["gpus"], "days": best["train"]["days"],
                   "gpu_hours": best["train"]["gpu_hours"], "cost_usd": best["train"]["cost_usd"],
                   "layout": {k: best.get(k) for k in LAYOUT_KEYS}, "layout_text": layout_text(best),
                   "step_s": best["step"]["time_s"], "mfu": best["step"].get("mfu"),
                   "samples_per_s": best["step"].get("samples_per_s"),
                   "memory_total_gib": best["memory_gib"]["total"], "capacity_gib": best["memory_gib"]["capacity"],
                   "nodes": math.ceil(best["gpus"] / gpu.gpus_per_node), "why_best": _why(plan, best)}
    return {
        "title": spec.name,
        "model": spec.model.name,
        "plan_source": plan_source or "given",
        "objective": plan.get("objective"),
        "deadline_days": deadline_days,
        "gpu": {"name": gpu.name, "hbm_gib": gpu.hbm_gib, "peak_tflops": gpu.peak_tflops,
                "gpus_per_node": gpu.gpus_per_node, "usd_per_hour": spec.hardware.price},
        "sequence": {"tokens": est["sequence_length"], "text": est["sequence"]["text"]},
        "params_total": est["params"]["total"],
        "flops_train_per_sample": est["flops"]["train_per_sample"],
        "samples": spec.training.samples, "epochs": spec.training.epochs,
        "summary": summary,
        "risks": risks(spec, best, val, deadline_days, plan),
        "counts": count_rows(plan, deadline_days),
        "top_layouts": top_layouts(plan),
        "grid": rank_grid(best["tp"], best["pp"], best["cp"], best["dp"], gpu.gpus_per_node) if best else None,
        "attention": attention_rows(best_spec),
        "sensitivity": sensitivity_rows(plan),
        "budget": plan.get("budget") or {},
        "best_estimate": {"step_terms": best_est["step"]["terms"], "memory_gib": best_est["memory_gib"]} if best_est else None,
        "validation": val,
        "assumptions": assumptions(spec, plan, val),
    }


def _why(plan: dict[str, Any], best: dict[str, Any]) -> str:
    for c in plan.get("gpu_counts", []):
        if c["gpus"] == best.get("gpus"):
            return str(c.get("why_best") or "")
    return ""
