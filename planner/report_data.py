"""Every number the HTML capacity report shows, gathered from the planner as one JSON-ready dict.

The report reads the plan through its JSON contract (`Plan.to_json()`), so a saved `soraplan plan --json`
renders the same page as a fresh search; keys a partial plan lacks are left out of the page.

Pure: no plotly, no file or network access. The renderer (`cli/report_view.py`) only formats what
this module returns; it never computes a planning number itself. Sources:
  - `soraplan.planner.plan.plan(spec, gpu_counts, ...)` as its JSON contract (what `soraplan plan --json`
    prints, so a saved plan can be given instead): ranked layouts per GPU count, the recommendation, the
    curriculum budget and the sensitivity list;
  - `soraplan.planner.estimate` for sequence arithmetic, parameters, FLOPs and the attention comparison
    (evaluated at the recommended layout);
  - a `soraplan validate --json` result, passed in as a dict, for the evidence section.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeGuard

from .estimate import attention_comparison, estimate
from .errors import UserError
from .plan import plan as run_planner
from .rank import TERM_WORDS, format_layout
from .results import Layout, Plan
from .spec import Spec, spec_with

LAYOUT_KEYS = ("tp", "pp", "vpp", "cp", "cp_comm", "dp", "micro_batch", "global_batch", "sequence_parallel", "recompute",
               "distributed_optimizer", "attention")
TOP_LAYOUTS = 5
HEADROOM_WARN = 0.10  # the plan's default memory headroom (SearchOptions.headroom): less than this is flagged


# ----------------------------------------------------------------------------------------------- plan seam
def run_plan(spec: Spec, gpu_counts: list[int], deadline_days: float | None = None, objective: str | None = None,
             options: Any = None, curriculum: Any = None, progress: Any = None) -> dict[str, Any]:
    """The layout search, budget and sensitivity (`soraplan.planner.plan.plan`) as its JSON contract."""
    return run_planner(spec, gpu_counts, objective=objective or "time", deadline_days=deadline_days, options=options,
                       curriculum=curriculum, progress=progress).to_json()


def spec_for_layout(spec: Spec, entry: dict[str, Any]) -> Spec:
    """The spec with a plan entry's layout on the GPUs it uses (to ask the planner about that layout)."""
    par = {key: entry[key] for key in ("tp", "pp", "vpp", "cp", "dp", "micro_batch", "global_batch",
                                       "sequence_parallel", "recompute", "distributed_optimizer")}
    par["gpus"] = entry["tp"] * entry["pp"] * entry["cp"] * entry["dp"]
    par["recompute_layers"] = entry.get("recompute_layers")
    par["cp_comm"] = entry.get("cp_comm") or spec.parallel.cp_comm
    return spec_with(spec, parallel=par, model={"attention": entry.get("attention") or spec.model.attention})


# ------------------------------------------------------------------------------------------------ helpers
def layout_text(e: dict[str, Any]) -> str:
    """A ranked layout's JSON in plain words: `format_layout(..., "words")`."""
    return format_layout(Layout.from_json(e), "words")


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


def normalize_validation(raw: Any) -> dict[str, Any] | None:
    """The rows of a `soraplan validate --json` result + date and device, in one shape.

    `soraplan validate --json` prints {"machine": {"date", "host", "cpus", ...}, "device": "cpu" | "cuda", "rows": [{"config", "quantity",
    "measured", "predicted", "tolerance" (relative; 0 exact; None: reported only), "unit", "error" (relative),
    "ok"}], "errors": [{"config", "error"}], "failed", "ok"} and, on a GPU, "calibration": {"device" (the card),
    "efficiency", "gemm_efficiency", "attention_efficiency", ...}. A few other spellings are accepted too.
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
        rows.append({"config": str(_first(r, "config", "case", "configuration", default="")),
                     "quantity": str(_first(r, "quantity", "name", "what", "metric", default="?")),
                     "unit": str(_first(r, "unit", "units", default="")),
                     "measured": measured, "predicted": predicted, "error_pct": err, "tolerance_pct": tol,
                     "pass": None if ok is None or info else bool(ok), "device": _first(r, "device", default=None)})
    for e in meta.get("errors") or []:  # configurations validate could not measure count as failures
        if isinstance(e, dict):
            rows.append({"config": str(e.get("config", "")), "quantity": f"error: {e.get('error', '')}", "unit": "",
                         "measured": None, "predicted": None, "error_pct": None, "tolerance_pct": None, "pass": False,
                         "device": None})
    if not rows:
        raise UserError("--validation: the file holds no comparisons")
    device = _first(calib, "device", default=None) or _first(meta, "device", "gpu", "device_name", "accelerator",
                                                             default=None)
    if device == "cpu" and machine:
        device = f"CPU ({machine.get('cpus', '?')} cores, {machine.get('platform', '')})".replace(", )", ")")
    devices = sorted({str(r["device"]) for r in rows if r["device"]})
    return {"date": _first(meta, "date", "timestamp", "generated", "created", "measured_at", default=None)
            or machine.get("date"),
            "device": device if device is not None else (", ".join(devices) or None),
            "gpu_run": bool(calib) or meta.get("device") == "cuda",
            "efficiency": _first(calib, "efficiency", default=None) if calib else
            _first(meta, "efficiency", "measured_efficiency", "calibrated_efficiency", default=None),
            "rows": rows, "passed": sum(1 for r in rows if r["pass"] is True),
            "failed": sum(1 for r in rows if r["pass"] is False), "info": sum(1 for r in rows if r["pass"] is None)}


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
    search = plan.get("search") or {}
    eff = search.get("efficiency") or {}
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
    if "headroom" in search:
        rows.append({"name": "Memory headroom kept free", "value": f"{search['headroom']:.0%} of HBM",
                     "source": "layout search setting (--headroom)"})
    if "max_tp_in_node" in search:
        rows.append({"name": "Largest tensor-parallel group", "value": f"{search['max_tp_in_node']} GPUs (inside one node)",
                     "source": "layout search setting (--max-tp-in-node)"})
    if "global_batch_range" in search:
        lo, hi = search["global_batch_range"]
        rows.append({"name": "Global batch (clips per step)", "value": f"{lo:,} to {hi:,}",
                     "source": "layout search setting (--global-batch-range / --global-batch)"})
    if "attentions" in search:
        rows.append({"name": "Attention patterns searched", "value": ", ".join(map(str, search["attentions"])),
                     "source": "your spec (+ windows with --allow-window)"})
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
    for r in plan.get("sensitivity") or []:  # the plan's notes on its own assumptions (e.g. where efficiencies come from)
        if isinstance(r, dict) and r.get("note"):
            rows.append({"name": f"Sensitivity: {r.get('assumption', '?')}", "value": f"{r.get('base', '')}",
                         "source": str(r["note"])})
    if validation is None:
        rows.append({"name": "Validation", "value": "none", "source": "no `soraplan validate --json` result was given"})
    return rows


def count_rows(plan: dict[str, Any], deadline_days: float | None) -> list[dict[str, Any]]:
    best = plan.get("best") or {}
    rows = []
    for c in plan.get("gpu_counts", []):
        top = c["ranked"][0] if c.get("ranked") else None
        rows.append({"gpus": c["gpus"], "gpus_used": top.get("gpus_used", c["gpus"]) if top else None, "fits": top is not None,
                     "days": top["train"]["days"] if top else None,
                     "gpu_hours": top["train"]["gpu_hours"] if top else None,
                     "cost_usd": top["train"]["cost_usd"] if top else None,
                     "layout": layout_text(top) if top else (c.get("message") or "no layout fits"),
                     "recommended": bool(top) and c["gpus"] == best.get("gpus"),
                     "meets_deadline": None if deadline_days is None or top is None else top["train"]["days"] <= deadline_days,
                     "evaluated": c.get("evaluated"), "feasible": c.get("feasible"), "rejected": c.get("rejected", {}),
                     "why_best": c.get("why_best", "")})
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


def step_breakdown(tops: list[dict[str, Any]]) -> dict[str, Any]:
    """Seconds per step by term (the plan's step terms, named in plain words by the plan) for the top layouts."""
    terms = [k for k in TERM_WORDS if any(_is_num(e["step"].get(k)) and e["step"][k] > 0 for e in tops)]
    return {"terms": [{"key": k, "label": TERM_WORDS[k]} for k in terms],
            "layouts": [{k: e["step"].get(k, 0.0) for k in terms} | {"time_s": e["step"]["time_s"]} for e in tops]}


def _is_num(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def sensitivity_rows(plan: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [dict(r) for r in plan.get("sensitivity", []) or [] if isinstance(r, dict)]
    for r in rows:
        lo, hi = r.get("days_low"), r.get("days_high")
        r["swing_days"] = abs(hi - lo) if _is_num(lo) and _is_num(hi) else 0.0
    return sorted(rows, key=lambda r: r["swing_days"])  # largest last: the top bar of a tornado


def attention_rows(best_spec: Spec | None) -> list[dict[str, Any]]:
    """Full vs window vs spatial-temporal at the recommended layout (the planner's attention_comparison)."""
    if best_spec is None:
        return []
    rows = attention_comparison(best_spec)
    full = next((r for r in rows if r["attention"] == "full"), None)
    for r in rows:
        r["days_saved"] = (full["days"] - r["days"]) if full else None
    return rows


def attention_note(rows: list[dict[str, Any]], best: dict[str, Any] | None, plan: dict[str, Any]) -> str:
    """Why a pattern is missing from the comparison, and what the plan says about window attention instead."""
    if not best or any(str(r["attention"]).startswith("window") for r in rows):
        return ""
    note = (f"Window attention is not shown at this layout: its windows do not split evenly over the "
            f"{best['cp']} context-parallel ranks." if best.get("cp", 1) > 1 else "")
    w = next((r for r in plan.get("sensitivity") or [] if "window" in str(r.get("assumption", "")).lower()
              and _is_num(r.get("days_high"))), None)
    if w:
        gain = w["days_low"] - w["days_high"]
        note += (f" With the layout searched again for window attention ({w['high']}), the plan gives "
                 + (f"{w['days_high']:.1f} days instead of {w['days_low']:.1f}." if gain >= 0.05
                    else f"no gain ({w['days_high']:.1f} days)."))
    return note.strip()


def budget_view(plan: dict[str, Any], best: dict[str, Any] | None) -> dict[str, Any]:
    """The plan's training budget: per stage at the recommended GPU count, totals and passes per GPU count."""
    b = plan.get("budget") or {}
    gpus = best["gpus"] if best else None
    stages = []
    for st in b.get("stages") or []:
        at = next((r for r in st.get("per_gpus", []) if r.get("gpus") == gpus), None)
        stages.append({"name": st.get("name"), "geometry": st.get("geometry"), "sequence_length": st.get("sequence_length"),
                       "samples": st.get("samples"), "dataset": st.get("dataset"), "at_best": at,
                       "per_gpus": st.get("per_gpus", [])})
    return {"curriculum": bool(b.get("curriculum")), "gpus": gpus, "stages": stages, "totals": b.get("totals") or [],
            "passes": b.get("passes") or [], "pass_samples": b.get("pass_samples"), "statement": b.get("statement", "")}


def risks(best: dict[str, Any] | None, plan: dict[str, Any], validation: dict[str, Any] | None,
          deadline_days: float | None) -> list[dict[str, str]]:
    """Plain-words risk flags: level ok | warn | bad, a title and one or two sentences."""
    out: list[dict[str, str]] = []
    if not best:
        msgs = " ".join(str(c["message"])[:1].upper() + str(c["message"])[1:] for c in plan.get("gpu_counts", [])
                        if c.get("message"))
        return [{"level": "bad", "title": "Nothing fits",
                 "text": "No layout fits at any of the GPU counts asked for. " + (msgs or
                         "Use more GPUs, a GPU with more memory, recompute, or shorter / smaller clips.")}]
    mem = best["memory_gib"]
    headroom = 1 - mem["total"] / mem["capacity"]
    want = (plan.get("search") or {}).get("headroom", HEADROOM_WARN)
    level = "bad" if headroom < 0 else "warn" if headroom < max(want, HEADROOM_WARN) else "ok"
    out.append({"level": level, "title": f"Memory headroom {headroom:.0%}",
                "text": f"The recommended layout uses {mem['total']:.1f} of {mem['capacity']:.0f} GiB per GPU. "
                        + ("It does not fit." if level == "bad" else
                           "Little room for fragmentation or longer clips: expect out-of-memory risk." if level == "warn" else
                           "Room for allocator fragmentation and spikes.")})
    eff = (plan.get("search") or {}).get("efficiency") or {}
    mfu = best.get("step", {}).get("mfu")
    measured = measured_efficiency(validation)
    mfu_txt = f" (overall MFU {mfu:.0%})" if _is_num(mfu) else ""
    speed = (f"matrix multiplies at {eff['gemm']:.0%} and attention at {eff['attention']:.0%} of peak FLOP/s"
             if _is_num(eff.get("gemm")) and _is_num(eff.get("attention")) else "the stated kernel efficiencies")
    if measured is None:
        out.append({"level": "warn", "title": "Speed assumed, not measured",
                    "text": f"The step time assumes {speed}{mfu_txt}, from {eff.get('source', 'the efficiency table')}. "
                            "No measurement backs it: if the real figure is lower, every day and dollar here grows in "
                            "proportion."})
    else:
        assumed = best.get("step", {}).get("efficiency") or eff.get("gemm")
        gap = measured / assumed - 1 if _is_num(assumed) and assumed else 0.0
        lvl = "ok" if gap >= -0.10 else "warn" if gap >= -0.25 else "bad"
        out.append({"level": lvl, "title": f"Speed measured at {measured:.0%} of peak",
                    "text": f"The plan assumes {speed}{mfu_txt}; the measurement gave {measured:.0%} "
                            f"({gap:+.0%} relative to the plan's {assumed:.0%})."})
    restart = next((r for r in plan.get("sensitivity", []) or []
                    if any(w in str(r.get("assumption", "")).lower() for w in ("restart", "failure"))), None)
    if restart and _is_num(restart.get("days_high")):
        out.append({"level": "warn", "title": "Failures and restarts not in the plan",
                    "text": f"The days assume no failures. With {restart['high']} of the time lost to failures, restarts "
                            f"and checkpoints, the schedule grows from {restart['days_low']:.1f} to "
                            f"{restart['days_high']:.1f} days" + (f" and the cost to ${restart['cost_high']:,.0f}"
                                                                  if _is_num(restart.get("cost_high")) else "") + "."})
    else:
        out.append({"level": "warn", "title": "Failures and restarts not included",
                    "text": f"The days assume {best.get('gpus_used', best.get('gpus', '?'))} GPUs run without failures, "
                            "restarts or time lost to checkpoints. Real runs at this scale lose time to each; add a margin."})
    if deadline_days is not None:
        days = best["train"]["days"]
        out.append({"level": "ok" if days <= deadline_days else "bad",
                    "title": f"Deadline {deadline_days:g} days: " + ("met" if days <= deadline_days else "missed"),
                    "text": f"The recommendation finishes in {days:.1f} days."})
    return out


# ------------------------------------------------------------------------------------------------ gather
def gather(spec: Spec, gpu_counts: Sequence[int] | None = None, deadline_days: float | None = None,
           validation: Any = None, objective: str | None = None, plan: Plan | dict[str, Any] | None = None,
           options: Any = None, curriculum: Any = None, progress: Any = None) -> dict[str, Any]:
    """Everything the report shows.

    Args:
        spec: the spec planned.
        gpu_counts: GPU counts to compare (default: the spec's compare_gpus).
        deadline_days: draw this deadline and flag counts that miss it.
        validation: a `soraplan validate --json` result, or None.
        objective: the plan's objective (default `time`).
        plan: a Plan, or its JSON (a saved `soraplan plan --json`, read tolerantly: missing keys are
            left out of the page); None runs the planner.
        options, curriculum, progress: passed to the planner when it runs.

    Returns:
        The report data: plain JSON-ready dicts and lists that `cli/report_view.py` renders.
    """
    counts = list(gpu_counts or spec.training.compare_gpus)
    if not counts or any(n < 1 for n in counts):
        raise UserError("--gpus: give positive GPU counts, e.g. 200,300,400")
    if deadline_days is not None and deadline_days <= 0:
        raise UserError("--deadline-days: must be positive")
    val = normalize_validation(validation)  # bad evidence fails before the search runs
    if plan is None:
        plan = run_plan(spec, counts, deadline_days, objective, options=options, curriculum=curriculum,
                        progress=progress)
    elif isinstance(plan, Plan):
        plan = plan.to_json()
    est = estimate(spec, compare=False)
    best = plan.get("best")
    best_spec = spec_for_layout(spec, best) if best else None
    gpu = spec.hardware.spec
    summary = None
    if best:
        used = best.get("gpus_used", best["gpus"])
        summary = {"gpu": gpu.name, "gpus": best["gpus"], "gpus_used": used, "days": best["train"]["days"],
                   "gpu_hours": best["train"]["gpu_hours"], "cost_usd": best["train"]["cost_usd"],
                   "layout": {k: best.get(k) for k in LAYOUT_KEYS}, "layout_text": layout_text(best),
                   "step_s": best["step"]["time_s"], "mfu": best["step"].get("mfu"),
                   "samples_per_s": best["step"].get("samples_per_s"),
                   "memory_total_gib": best["memory_gib"]["total"], "capacity_gib": best["memory_gib"]["capacity"],
                   "nodes": math.ceil(used / gpu.gpus_per_node), "best_reason": plan.get("best_reason", ""),
                   "why_best": _why(plan, best)}
    return {
        "title": spec.name,
        "model": spec.model.name,
        "objective": plan.get("objective"),
        "deadline_days": deadline_days,
        "gpu": {"name": gpu.name, "hbm_gib": gpu.hbm_gib, "peak_tflops": gpu.peak_tflops,
                "gpus_per_node": gpu.gpus_per_node, "usd_per_hour": spec.hardware.price},
        "sequence": {"tokens": est.sequence_length, "text": est.sequence["text"]},
        "params_total": est.params.total,
        "samples": spec.training.samples, "epochs": spec.training.epochs,
        "summary": summary,
        "risks": risks(best, plan, val, deadline_days),
        "counts": count_rows(plan, deadline_days),
        "top_layouts": (tops := top_layouts(plan)),
        "step_breakdown": step_breakdown(tops),
        "grid": rank_grid(best["tp"], best["pp"], best["cp"], best["dp"], gpu.gpus_per_node) if best else None,
        "attention": (att := attention_rows(best_spec)),
        "attention_note": attention_note(att, best, plan),
        "sensitivity": sensitivity_rows(plan),
        "budget": budget_view(plan, best),
        "validation": val,
        "assumptions": assumptions(spec, plan, val),
    }


def _why(plan: dict[str, Any], best: dict[str, Any]) -> str:
    for c in plan.get("gpu_counts", []):
        if c["gpus"] == best.get("gpus"):
            return str(c.get("why_best") or "")
    return ""
