"""`estimate(spec)`: every number `soraplan estimate` prints, as one typed `Estimate`.

Its `.to_json()` keys named in the CLI contract (sequence_length, params, flops, memory_gib, step, train, spec)
are stable; other tools read them.
"""

from __future__ import annotations

import math
from typing import Any

from .activations import stage_activations
from .flops import flops
from .memory import GiB, memory
from .params import param_groups, params_per_gpu, total_params
from .results import (ClaimCheck, Estimate, EstimateStep, EstimateTrain, FlopsPerSample, MemoryGiB,
                      ParamCounts)
from .spec import Spec, spec_with
from .step import step_time
from .train import compare_gpu_counts, train_budget


def sequence_arithmetic(spec: Spec) -> dict[str, Any]:
    v = spec.video
    if v.tokens is not None:
        return {"tokens_given": v.tokens, "text": f"{v.tokens:,} tokens (given directly)"}
    lt, lh, lw = v.latent_thw
    t, h, w = v.grid
    lt_rule = f"1 + ({v.frames}-1)/{v.vae_stride_t}" if v.causal_first_frame else f"{v.frames}/{v.vae_stride_t}"
    text = (f"{v.frames} frames x {v.height}x{v.width} -> latent {lt_rule} = {lt} x {lh}x{lw} (VAE {v.vae_stride_t}x"
            f"{v.vae_stride_s}x{v.vae_stride_s}) -> patches {lt}/{v.patch_t} x {lh}/{v.patch_h} x {lw}/{v.patch_w} = "
            f"{t} x {h} x {w} = {v.seq_len:,} tokens")
    return {"latent": [lt, lh, lw], "grid": [t, h, w], "text": text}


def default_window(spec: Spec) -> str | None:
    """A window that tiles the grid for the side-by-side comparison: up to 8 latent-patch frames x full frame."""
    t, h, w = spec.video.grid
    for wt in (8, 4, 2, 1):
        if t % wt == 0 and t > wt:
            return f"window:{wt},{h},{w}"
    return None


def attention_comparison(spec: Spec) -> list[dict[str, Any]]:
    """Full vs window vs spatial-temporal attention for the same spec."""
    patterns = ["full"]
    if spec.model.attention_kind == "window":
        patterns.append(spec.model.attention)
    elif spec.video.tokens is None and (w := default_window(spec)):
        patterns.append(w)
    if spec.video.tokens is None:
        patterns.append("spatial-temporal")
    rows = []
    for pat in patterns:
        try:
            s2 = spec_with(spec, model={"attention": pat})
        except ValueError:
            continue
        fl, mem, st, tb = flops(s2), memory(s2), step_time(s2), train_budget(s2)
        rows.append({"attention": pat, "forward_flops": fl.forward, "self_attn_core_flops": fl.by_part["self_attn_core"],
                     "activations_gib": mem.activations / GiB, "memory_total_gib": mem.total / GiB, "fits": mem.fits,
                     "step_s": st.time_s, "days": tb.days, "gpu_hours": tb.gpu_hours})
    return rows


SEED_GPUS = (200, 400)      # the reference claim checked: "200-400 A100 for 2-3 months"
SEED_DAYS = (60, 90)


def seed_claim(spec: Spec, gpu_hours_per_sample: float) -> ClaimCheck:
    """What the reference claim "200-400 GPUs for 2-3 months" buys at this spec's cost per sample."""
    lo_h = SEED_GPUS[0] * SEED_DAYS[0] * 24
    hi_h = SEED_GPUS[1] * SEED_DAYS[1] * 24
    lo_s, hi_s = lo_h / gpu_hours_per_sample, hi_h / gpu_hours_per_sample
    n = spec.training.samples
    eff = spec.hardware.efficiency if spec.hardware.efficiency is not None else step_time(spec).efficiency  # per-op table
    text = (f"200-400 {spec.hardware.spec.name} for 2-3 months = {lo_h:,.0f}-{hi_h:,.0f} GPU-hours = "
            f"{lo_s / 1e6:,.1f}-{hi_s / 1e6:,.1f} M samples of this geometry = {lo_s / n:.1f}-{hi_s / n:.1f} passes over "
            f"{n / 1e6:,.1f} M samples, at {eff:.0%} of peak (compute efficiency), "
            f"{spec.parallel.recompute} recompute and {spec.model.attention} attention")
    return ClaimCheck(gpus=SEED_GPUS, days=SEED_DAYS, gpu_hours=(lo_h, hi_h), samples=(lo_s, hi_s),
                      passes=(lo_s / n, hi_s / n), gpu_hours_per_sample=gpu_hours_per_sample, text=text)


def estimate(spec: Spec, compare: bool = True) -> Estimate:
    """Every number `soraplan estimate` prints.

    Args:
        spec: the model, video, layout, hardware and training.
        compare: add the GPU-count table, the "200-400 GPUs for 2-3 months" check and the attention comparison.

    Returns:
        The Estimate.
    """
    fl = flops(spec)
    mem = memory(spec)
    st = step_time(spec)
    tb = train_budget(spec)
    acts = stage_activations(spec)
    gib = mem.gib()
    return Estimate(
        name=spec.name,
        sequence_length=spec.seq_len,
        sequence=sequence_arithmetic(spec),
        params=ParamCounts(total=total_params(spec), per_gpu=params_per_gpu(spec),
                           groups={g.name: g.total for g in param_groups(spec)}),
        flops=FlopsPerSample(forward_per_sample=fl.forward, train_per_sample=fl.train, hardware_per_sample=fl.hardware,
                             recompute_per_sample=fl.recompute, forward_by_part=fl.by_part),
        memory_gib=MemoryGiB(**gib),  # type: ignore[arg-type]
        activations={k: (v / GiB if k in ("per_layer", "per_microbatch", "recompute_working", "total") else v)
                     for k, v in acts.items()},
        step=EstimateStep(time_s=st.time_s, mfu=st.mfu, samples_per_s=st.samples_per_s, terms=st.as_dict()),
        train=EstimateTrain(samples=tb.samples, steps=tb.steps, gpus=tb.gpus, gpu_hours=tb.gpu_hours, days=tb.days,
                            cost_usd=tb.cost_usd, usd_per_gpu_hour=spec.hardware.price),
        hardware=spec.hardware.spec,
        spec=spec,
        seed_claim=seed_claim(spec, tb.gpu_hours / tb.samples) if compare else None,
        gpu_counts=tuple(compare_gpu_counts(spec)) if compare else None,
        attention_comparison=tuple(attention_comparison(spec)) if compare else None,
    )


def human(n: float, unit: str = "") -> str:
    """1.23 G style numbers for tables."""
    if n == 0 or not math.isfinite(n):
        return f"{n:g}{unit}"
    for scale, suffix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {suffix}{unit}"
    return f"{n:.3g} {unit}".rstrip()
