"""Training budget: a multi-stage curriculum, each stage on its own best layout, totals per GPU count,
storage read bandwidth, what 60-90 days on each GPU count buy (passes over the samples), and the sensitivity
list.

A curriculum is YAML (or the built-in `default`):

    stages:
      - name: images 256^2
        geometry: {frames: 1, vae_stride_t: 1, patch_t: 1, res: 256}   # any spec flag (as on the CLI)
        dataset: laion-5b                 # samples default to the dataset's count
        samples: 200000000                # or give them directly
        epochs: 1
        global_batch_range: [1024, 8192]  # optional, per stage
      - name: full 40 s clips
        geometry: {frames: 960, res: 256}
        dataset: youku-mplug

Storage: a stage reads latents (latent T x H x W x C at 2 bytes: pre-encoded bf16) or raw video (the dataset's
bytes per second of footage x clip seconds; per image for image sets); the read rate per GPU is
samples/s of the best layout / GPUs x bytes per sample. Decoding and VAE-encoding raw video on the fly costs
compute that this budget does not include (pre-encode latents).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .config import SpecError, deep_merge, flags_to_dict, format_validation_error
from .datasets import get_dataset
from .errors import UserError
from .rank import format_layout, search_count
from .results import Budget, CountTotal, PassRow, RankedLayout, SensitivityRow, StageBudget, StageRow
from .search import SearchOptions, Space, window_options
from .spec import Spec, spec_with
from .step import op_efficiency
from .train import training_samples

DEFAULT_CURRICULUM: dict[str, Any] = {"stages": [
    {"name": "images 256x256", "geometry": {"frames": 1, "vae_stride_t": 1, "patch_t": 1, "res": 256},
     "dataset": "laion-5b", "samples": 200_000_000, "epochs": 1, "global_batch_range": [1024, 8192]},
    {"name": "short clips 4 s 128x128", "geometry": {"frames": 96, "res": 128}, "dataset": "youku-mplug", "epochs": 1,
     "global_batch_range": [256, 4096]},
    {"name": "full clips 40 s 256x256", "geometry": {"frames": 960, "res": 256}, "dataset": "youku-mplug", "epochs": 1},
]}
RESTART_OVERHEAD = (0.0, 0.15)       # failures, restarts, checkpoint writes: fraction of wall-clock added


def load_curriculum(source: Any) -> dict[str, Any]:
    """A curriculum dict from a dict, 'default' or a YAML path (one clear error on bad input)."""
    if source is None:
        return {}
    if isinstance(source, dict):
        data = source
    elif str(source) == "default":
        data = DEFAULT_CURRICULUM
    else:
        import yaml

        from .config import read_text

        p = Path(str(source))
        text = read_text(p, "--curriculum", " (or say 'default')")
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, ValueError, TypeError, RecursionError):
            raise UserError(f"--curriculum: {p} is not valid YAML") from None
        if isinstance(data, list):
            data = {"stages": data}
    stages = data.get("stages") if isinstance(data, dict) else None
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) for s in stages):
        raise UserError("--curriculum: expected 'stages:' with a list of mappings")
    return {"stages": stages}


def _stage_number(value: Any, stage: Any, field: str, high: float) -> float:
    """A stage's samples or epochs as a float: positive, finite and at most `high`; else one UserError."""
    try:
        number = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not 0 < number <= high:                           # also refuses nan and inf
        raise UserError(f"curriculum stage {stage!r}: {field} must be a positive number at most {high:g}, got {value!r}")
    return number


def stage_spec(spec: Spec, stage: dict[str, Any], i: int) -> tuple[Spec, float, tuple[int, int] | None]:
    """The stage's Spec (geometry overrides on the base), its sample count (x epochs) and search options."""
    name = stage.get("name", f"stage {i + 1}")
    unknown = set(stage) - {"name", "geometry", "dataset", "samples", "epochs", "global_batch_range"}
    if unknown:
        raise UserError(f"curriculum stage {name!r}: unknown keys {', '.join(sorted(unknown))}")
    d = spec.model_dump()
    d["parallel"] = {}
    geometry = stage.get("geometry") or {}
    if not isinstance(geometry, dict):
        raise UserError(f"curriculum stage {name!r}: geometry must be a mapping of spec flags, got {geometry!r}")
    try:
        d = deep_merge(d, flags_to_dict(dict(geometry)))
    except SpecError as e:
        raise UserError(f"curriculum stage {name!r}: {e}") from None
    samples = stage.get("samples")
    if samples is None and stage.get("dataset"):
        try:
            samples = get_dataset(str(stage["dataset"])).samples
        except ValueError as e:
            raise UserError(f"curriculum stage {name!r}: {e}") from None
    samples = _stage_number(samples if samples is not None else spec.training.samples, name, "samples", 1e15)
    epochs = _stage_number(stage.get("epochs", 1), name, "epochs", 1e6)
    d["training"]["samples"] = int(samples)
    d["training"]["epochs"] = epochs
    if stage.get("dataset"):
        d["training"]["dataset"] = str(stage["dataset"])
    try:
        s = Spec.model_validate(d)
    except ValidationError as e:
        raise UserError(f"curriculum stage {name!r}: {format_validation_error(e)}") from None
    except ValueError as e:
        msg = str(e)
        raise UserError(f"curriculum stage {name!r}: {msg}") from None
    gbr = stage.get("global_batch_range")
    if not gbr:
        return s, training_samples(s), None
    if not isinstance(gbr, (list, tuple)) or len(gbr) != 2:
        raise UserError(f"curriculum stage {name!r}: global_batch_range must be [low, high]")
    return s, training_samples(s), (int(gbr[0]), int(gbr[1]))


def bytes_per_sample(spec: Spec) -> dict[str, Any]:
    """Latent and raw bytes one training sample reads."""
    v = spec.video
    if v.tokens is not None:
        latent = v.tokens * v.patch_volume * v.latent_channels * 2
    else:
        lt, lh, lw = v.latent_thw
        latent = lt * lh * lw * v.latent_channels * 2
    is_image = v.tokens is None and v.frames == 1
    name = spec.training.dataset or ("laion-5b" if is_image else "youku-mplug")
    try:
        ds = get_dataset(name)
    except ValueError:
        ds = get_dataset("laion-5b" if is_image else "youku-mplug")
    raw_total = float(getattr(ds, "raw_tb", 0.0)) * 1e12
    mean_s = float(getattr(ds, "mean_seconds", 0.0) or 0.0)
    if getattr(ds, "kind", "video") == "video" and mean_s > 0 and not is_image:
        raw = raw_total / ds.samples / mean_s * v.seconds
        how = f"{ds.name}: {raw_total / 1e12:g} TB / {ds.samples:,} clips / {mean_s:g} s mean x {v.seconds:g} s"
    else:
        raw = raw_total / ds.samples
        how = f"{ds.name}: {raw_total / 1e12:g} TB / {ds.samples:,} samples"
    return {"latent_bytes": latent, "raw_bytes": raw, "raw_source": how}


def _best(space: Space, gpus: int, samples: float, objective: str) -> RankedLayout | None:
    c = search_count(space, gpus, samples, objective, top=1)
    return c.ranked[0] if c.ranked else None


def training_budget(spec: Spec, gpu_counts: tuple[int, ...], curriculum: Any = None,
                    options: SearchOptions | None = None, objective: str = "time") -> Budget:
    """Per stage and GPU count: the best layout and its days; totals; storage; passes in 60/90 days.

    Args:
        spec: the main spec (stages override its geometry, dataset and samples).
        gpu_counts: the GPU counts to budget.
        curriculum: see `load_curriculum`; None: one stage, the spec itself.
        options: the layout search's options.
        objective: the ranking objective (see rank.py).

    Returns:
        The Budget.
    """
    options = options or SearchOptions()
    cur = load_curriculum(curriculum)
    stages_in = cur.get("stages") or [{"name": "train"}]
    stages = []
    sums = {n: [0.0, 0.0, 0.0] for n in gpu_counts}     # days, GPU-hours, dollars
    feasible = {n: True for n in gpu_counts}
    for i, st in enumerate(stages_in):
        if curriculum is None:
            s, samples, gbr = spec, training_samples(spec), None
        else:
            s, samples, gbr = stage_spec(spec, st, i)
        opts = replace(options, global_batch_range=gbr) if gbr else options
        space = Space(s, opts)
        io = bytes_per_sample(s)
        rows = []
        for n in gpu_counts:
            c = search_count(space, n, samples, objective, top=1)
            if not c.ranked:
                feasible[n] = False
                rows.append(StageRow(gpus=n, feasible=False, message=c.message or ""))
                continue
            e = c.ranked[0]
            per_gpu_sps = e.step.samples_per_s / e.gpus_used
            rows.append(StageRow(gpus=n, feasible=True, layout=format_layout(e), gpus_used=e.gpus_used,
                                 days=e.train.days, gpu_hours=e.train.gpu_hours, cost_usd=e.train.cost_usd,
                                 mfu=e.step.mfu, step_s=e.step.time_s, samples_per_s=e.step.samples_per_s,
                                 memory_gib=e.memory_gib.total,
                                 read_mb_s_per_gpu_latent=per_gpu_sps * io["latent_bytes"] / 1e6,
                                 read_mb_s_per_gpu_raw=per_gpu_sps * io["raw_bytes"] / 1e6))
            acc = sums[n]
            acc[0] += e.train.days
            acc[1] += e.train.gpu_hours
            acc[2] += e.train.cost_usd
        v = s.video
        geometry = (f"{v.tokens} tokens" if v.tokens is not None else f"image {v.height}x{v.width}" if v.frames == 1
                    else f"{v.frames} frames {v.height}x{v.width} ({v.seconds:g} s)")
        stages.append(StageBudget(name=st.get("name", f"stage {i + 1}"), geometry=geometry, sequence_length=s.seq_len,
                                  samples=samples, dataset=s.training.dataset, storage=io, per_gpus=tuple(rows)))
    totals = tuple(CountTotal(gpus=n, days=sums[n][0], gpu_hours=sums[n][1], cost_usd=sums[n][2], feasible=feasible[n])
                   for n in gpu_counts)
    # what 2-3 months buy: passes over the main spec's samples at its geometry
    passes = []
    main_space = Space(spec, options)
    for n in gpu_counts:
        one_pass = _best(main_space, n, float(spec.training.samples), objective)
        if one_pass is None:
            passes.append(PassRow(gpus=n, feasible=False))
            continue
        d = one_pass.train.days
        passes.append(PassRow(gpus=n, feasible=True, days_per_pass=d, passes_in_60_days=60 / d,
                              passes_in_90_days=90 / d, mfu=one_pass.step.mfu, layout=format_layout(one_pass)))
    return Budget(curriculum=curriculum is not None, stages=tuple(stages), totals=totals, passes=tuple(passes),
                  pass_samples=spec.training.samples)


# --------------------------------------------------------------------------------------------------------
# Sensitivity: one assumption at a time, low and high, the best layout re-searched where it can change
# --------------------------------------------------------------------------------------------------------

Outcome = tuple[float, float]   # (days, dollars) of the best layout under one variant


def sensitivity(spec: Spec, gpus: int, options: SearchOptions | None = None,
                objective: str = "time") -> list[SensitivityRow]:
    """One assumption at a time, low and high: days and cost of the best layout on `gpus` GPUs.

    Args:
        spec: the spec planned.
        gpus: the recommended GPU count.
        options: the layout search's options.
        objective: the ranking objective.

    Returns:
        The rows, largest swing in days first (rows where a variant has no layout that fits come first).
    """
    options = options or SearchOptions()
    samples = training_samples(spec)

    def run(s: Spec, o: SearchOptions) -> Outcome | None:
        e = _best(Space(s, o), gpus, samples, objective)
        return (e.train.days, e.train.cost_usd) if e else None

    best = _best(Space(spec, options), gpus, samples, objective)
    if best is None:
        return []
    base: Outcome = (best.train.days, best.train.cost_usd)
    rows: list[SensitivityRow] = []

    def add(name: str, low: Any, high: Any, lo: Outcome | None, hi: Outcome | None, base_value: Any,
            note: str = "") -> None:
        rows.append(SensitivityRow(assumption=name, low=low, high=high, base=base_value, days_base=base[0],
                                   days_low=lo[0] if lo else None, days_high=hi[0] if hi else None,
                                   cost_low=lo[1] if lo else None, cost_high=hi[1] if hi else None, note=note,
                                   gpus=gpus))

    def scaled(days_f: float = 1.0, cost_f: float = 1.0) -> Outcome:
        return base[0] * days_f, base[1] * cost_f

    eff = op_efficiency(spec)
    lo_s = spec_with(spec, hardware={"gemm_efficiency": eff.gemm * 0.75, "attention_efficiency": eff.attention * 0.75})
    hi_s = spec_with(spec, hardware={"gemm_efficiency": min(1.0, eff.gemm * 1.15),
                                     "attention_efficiency": min(1.0, eff.attention * 1.15)})
    add("kernel efficiency (MFU)", f"x0.75 (gemm {eff.gemm * 0.75:.2f}, attn {eff.attention * 0.75:.2f})",
        f"x1.15 (gemm {min(1, eff.gemm * 1.15):.2f}, attn {min(1, eff.attention * 1.15):.2f})",
        run(lo_s, options), run(hi_s, options), f"gemm {eff.gemm:.2f}, attn {eff.attention:.2f}",
        f"efficiencies from {eff.source}")
    ep = spec.training.epochs
    add("epochs", ep * 0.5, ep * 2, scaled(0.5, 0.5), scaled(2, 2), ep, "days scale with the samples seen")
    add("recompute", "none only", "full only", run(spec, replace(options, recompute=("none",))),
        run(spec, replace(options, recompute=("full",))), f"searched ({best.recompute} chosen)",
        "'none only' is empty when no layout fits without recompute")
    wins = window_options(spec)
    if wins and spec.model.attention == "full":
        add("window attention", "full attention", f"window allowed ({', '.join(wins)})",
            run(spec, replace(options, allow_window=False, attentions=("full",))),
            run(spec, replace(options, allow_window=True, attentions=None)), best.attention,
            "window attention changes the model (quality): a modelling decision, not only a systems one")
    gpu = spec.hardware.spec
    net = [spec_with(spec, hardware={"custom": {**gpu.model_dump(), "inter_node_gbs": gpu.inter_node_gbs * f}})
           for f in (0.5, 2.0)]
    add("inter-node bandwidth", f"{gpu.inter_node_gbs * 0.5:g} GB/s", f"{gpu.inter_node_gbs * 2:g} GB/s",
        run(net[0], options), run(net[1], options), f"{gpu.inter_node_gbs:g} GB/s per GPU")
    price = spec.hardware.price
    add("price per GPU-hour", f"${price * 0.75:.2f}", f"${price * 1.25:.2f}", scaled(1, 0.75), scaled(1, 1.25),
        f"${price:.2f}", "cost only: days do not change")
    o_lo, o_hi = RESTART_OVERHEAD
    add("failure/restart overhead", f"{o_lo:.0%}", f"{o_hi:.0%}", scaled(1 + o_lo, 1 + o_lo),
        scaled(1 + o_hi, 1 + o_hi), f"{o_lo:.0%}", "lost work, restarts and checkpoint writes")

    def swing(r: SensitivityRow) -> float:
        if r.days_low is None or r.days_high is None:
            return math.inf
        return abs(r.days_high - r.days_low)

    rows.sort(key=lambda r: -swing(r) if math.isfinite(swing(r)) else -1e300)
    return rows


def _span(values: list[float]) -> str:
    lo, hi = f"{min(values):.0%}", f"{max(values):.0%}"
    return lo if lo == hi else f"{lo}-{hi}"


def seed_statement(budget: Budget, sens: list[SensitivityRow], spec: Spec) -> str:
    """One paragraph: what the GPU counts buy in 60-90 days, and the assumptions that move it most."""
    ok = [p for p in budget.passes if p.feasible]
    if not ok:
        return "No GPU count has a layout that fits, so no training budget can be stated."
    lo, hi = min(ok, key=lambda p: p.gpus), max(ok, key=lambda p: p.gpus)
    assert lo.passes_in_60_days is not None and hi.passes_in_90_days is not None
    v = spec.video
    what = f"{v.seq_len:,}-token samples" if v.tokens is not None else f"{v.seconds:g} s {v.height}x{v.width} clips"
    gname = spec.hardware.spec.name
    text = (f"{lo.gpus}-{hi.gpus} x {gname} for 60-90 days buy {lo.passes_in_60_days:.1f}-{hi.passes_in_90_days:.1f} "
            f"passes over {budget.pass_samples:,} {what} (one pass: {lo.days_per_pass:.1f} days on {lo.gpus} GPUs, "
            f"{hi.days_per_pass:.1f} on {hi.gpus}; MFU {_span([p.mfu for p in ok if p.mfu is not None])}).")
    top = [r for r in sens if r.days_low is not None and r.days_high is not None
           and abs(r.days_high - r.days_low) > 1e-9][:3]
    if top:
        text += " What moves it most: " + "; ".join(
            f"{r.assumption} ({r.low} -> {r.high}: {r.days_low:.1f} -> {r.days_high:.1f} days)" for r in top) + "."
    return text
