"""Step time: per-op compute, exposed TP/CP/DP/PP communication, the pipeline bubble and the optimizer.

One formula core, `step_terms`, written once and evaluated two ways: on Python scalars by `step_time(spec)`
(what `soraplan estimate` prints) and on numpy arrays of layouts by `soraplan.planner.search` (what
`soraplan plan` ranks). Everything layout-independent comes from `step_constants(spec)`.

Per rank and per optimizer step (m micro-batches of b samples; s = S/cp tokens; Ls = L/pp layers):
  gemm        = GEMM FLOPs (linear layers, embedders; + recomputed) * m*b / (tp*pp*cp) / (peak * eff_gemm)
  attention   = attention-core FLOPs (QK^T, AV; + recomputed) * m*b / (tp*pp*cp) / (peak * eff_attn)
                (unfused attention runs its cores as batched GEMMs: they count as GEMM FLOPs)
  elementwise = memory-bound ops (norms, modulate, gate + residual, GELU, softmax when unfused, dropout):
                bytes moved / (HBM TB/s * eff_hbm); outside the TP region they split over tp only with SP
  compute     = gemm + attention + elementwise      (recompute_s: the part of it spent re-running forward)
  comm volume = the bytes per collective kind and group that `soraplan validate` measures and compares exactly
                (planner/comm.py: `tp_volumes`, `cp_volumes` per micro-batch, `dp_volumes` per optimizer step),
                turned into link bytes by `comm.wire_factor` (ring algorithms: all-reduce 2(n-1)/n, all-gather
                (n-1) x the input shard, reduce-scatter and all-to-all (n-1)/n x the input, isend 1); time =
                link bytes / (bandwidth * eff_comm). Only the bandwidth is assumed.
  tp comm     = the TP volumes (per sub-block: without SP all-reduces forward, backward and in a recomputed
                forward; with SP all-gathers and reduce-scatters, incl. the backward re-all-gather of the saved
                sharded input; + the final layer's gather, adaLN and text K/V gradients) x m, exposed (not
                overlapped). tp > GPUs/node runs over the network bandwidth here (penalised); `plan` forbids it
                by default (--max-tp-in-node).
  cp comm     = the CP volumes (by parallel.cp_comm) of the layers whose keys span CP ranks (a2a: every
                layer) + the gather of the hidden states before the final layer, x m. p2p (ring attention)
                is overlapped with the attention of the chunk in hand: exposed = max(0, comm - attention time
                of those layers); all-gather and a2a are exposed
  dp comm     = the DP-CP volumes over the dp*cp ranks that hold the same parameters: reduce-scatter of the
                padded gradient buffer + all-gather of the updated shard with the distributed optimizer, or
                one all-reduce without; the reduce-scatter hides behind the last micro-batch's backward, the
                all-gather behind the first micro-batch's forward: exposed = max(0, rs - bwd_mb) + max(0, ag - fwd_mb)
  pp bubble   = (p-1)/(v*m) * (compute + tp comm + exposed cp comm)        [1F1B / interleaved 1F1B]
  pp p2p      = 2 m v sends of one micro-batch's boundary activation (s b h B / (t if SP)), exposed
  optimizer   = Adam's bytes (grads read twice: norm + update; master, moments read and written; param
                written) of this rank's shard (1/(dp*cp) with the distributed optimizer) / (HBM TB/s * eff_hbm)
  overhead    = host / launch gaps per layer and pass, data loading, optimizer launches, and stragglers that
                grow with the node count (efficiency.overhead)
  time        = compute + tp + cp + dp + bubble + p2p + optimizer + overhead
  MFU         = model FLOPs / (time * GPUs * peak)

Efficiencies: GEMM and attention efficiency depend on the per-rank GEMM shape and on the sequence length and
head dim, collective efficiency on the message size and on whether the group crosses nodes; their large-shape
values and the overheads are fitted on published runs (efficiency.py, data/step_fit.yaml, docs/backtest.md).
GPUs the fit does not cover start from the table `OP_EFFICIENCY` below (per GPU and op), overridden in this order by a calibration
file (`hardware.calibration`: `soraplan validate --device cuda` JSON, or a run's JSON-lines log), by
`hardware.efficiency` (one blanket number for GEMMs and attention) and by `hardware.gemm_efficiency`,
`attention_efficiency`, `hbm_efficiency`.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .flops import attention_keys, flops, layer_macs
from .comm import CommConstants, comm_constants, cp_volumes, dp_volumes, tp_volumes, wire_bytes, wire_factor
from .cp import A2A, CP_COMMS, P2P
from .efficiency import (DP_BUCKET_BYTES, StepFit, attention_shape, comm_efficiency, current_fit, family, gemm_shape,
                         overhead)
from .memory import memory_constants
from .params import params_per_gpu
from .scalar_ops import ScalarOps
from .spec import DTYPE_BYTES, Spec


@dataclass(frozen=True)
class OpEfficiency:
    gemm: float        # achieved / peak dense FLOP/s for large bf16 GEMMs
    attention: float   # achieved / peak for the fused (flash) attention kernel, forward + backward together
    hbm: float         # achieved / peak HBM bandwidth for memory-bound elementwise ops and the optimizer
    comm: float        # achieved / nominal link bandwidth for NCCL collectives (bus bandwidth)
    source: str = "table"
    shaped: bool = False   # gemm / attention are large-shape numbers that efficiency.py scales by shape


# Defaults: what well-tuned kernels reach in isolation at DiT shapes (h = 3072, head dim 128, long sequences).
# A100: cuBLAS bf16 GEMMs reach ~200-230 of 312 TFLOP/s; FlashAttention-2 reaches ~70 % forward and ~55-60 %
# backward at head dim 128 (Dao 2023) -> ~0.55 over fwd+bwd. Hopper: cuBLAS ~600-700 of 989; FA2 ~35-50 %
# (FA3 more; calibrate). Others are rough and marked so. End-to-end MFU comes out lower: elementwise ops,
# exposed communication and the bubble are added on top. `soraplan validate --device cuda` measures them.
OP_EFFICIENCY: dict[str, OpEfficiency] = {
    "a100-40g": OpEfficiency(0.65, 0.55, 0.80, 0.80, "table: A100 cuBLAS / FlashAttention-2"),
    "a100-80g": OpEfficiency(0.65, 0.55, 0.80, 0.80, "table: A100 cuBLAS / FlashAttention-2"),
    "h100-sxm": OpEfficiency(0.62, 0.45, 0.80, 0.80, "table: H100 cuBLAS / FlashAttention-2"),
    "h100-pcie": OpEfficiency(0.58, 0.42, 0.80, 0.75, "table: H100 PCIe (lower clocks)"),
    "h200": OpEfficiency(0.64, 0.47, 0.80, 0.80, "table: H200 (H100 kernels, more bandwidth)"),
    "h800": OpEfficiency(0.62, 0.45, 0.80, 0.80, "table: as H100 SXM"),
    "b200": OpEfficiency(0.60, 0.45, 0.80, 0.80, "table: rough, early kernels"),
    "l40s": OpEfficiency(0.60, 0.45, 0.80, 0.70, "table: rough"),
    "mi300x": OpEfficiency(0.45, 0.35, 0.75, 0.70, "table: rough, ROCm hipBLASLt / CK attention"),
    "ascend-910b": OpEfficiency(0.50, 0.40, 0.75, 0.70, "table: rough"),
}
DEFAULT_EFFICIENCY = OpEfficiency(0.55, 0.40, 0.75, 0.70, "table: default for a custom GPU")


def _check_eff(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
        raise UserError(f"{where}: efficiency must be a number in (0, 1], got {value!r}")
    return float(value)


def load_calibration(path: str | None, gpu: str, peak_tflops: float | None = None) -> dict[str, float]:
    """Efficiencies from a calibration file (same GPU only): {"efficiency"?, "gemm"?, "attention"?}.

    Two formats: the JSON object `soraplan validate --device cuda` writes
    ({"gpu", "efficiency", "gemm_efficiency", "attention_efficiency"}), or a finished run's JSON-lines log
    (one object per step with step_time_s, tflops_per_gpu, mfu; tflops_per_gpu / peak where mfu is missing):
    its median MFU (after the first 10 % of steps, warm-up) becomes the blanket efficiency. That is conservative: a run's MFU already contains its
    communication, which the step model adds again.
    """
    if not path:
        return {}
    p = Path(path)
    from .config import read_text

    text = read_text(p, "hardware.calibration", missing=f"hardware.calibration: cannot read calibration file {p} (no such file)")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        if str(data.get("gpu", gpu)).lower() != gpu.lower():
            raise UserError(f"hardware.calibration: {p} was measured on {data.get('gpu')!r}, not {gpu!r}")
        out = {}
        for key, name in (("efficiency", "efficiency"), ("gemm_efficiency", "gemm"), ("attention_efficiency", "attention")):
            if data.get(key) is not None:
                out[name] = _check_eff(data[key], f"hardware.calibration: {p} {key}")
        if not out:
            raise UserError(f"hardware.calibration: {p} has no efficiency, gemm_efficiency or attention_efficiency")
        return out
    # JSON lines from a run's log
    mfus = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or str(rec.get("gpu", gpu)).lower() != gpu.lower():
            continue
        if isinstance(rec.get("mfu"), (int, float)):
            mfus.append(float(rec["mfu"]))
        elif isinstance(rec.get("tflops_per_gpu"), (int, float)) and peak_tflops:
            mfus.append(float(rec["tflops_per_gpu"]) / peak_tflops)
    if not mfus:
        raise UserError(f"hardware.calibration: {p} is neither a calibration JSON nor a run log with 'mfu' per step")
    mfus = mfus[len(mfus) // 10:] or mfus
    return {"efficiency": _check_eff(statistics.median(mfus), f"hardware.calibration: {p} median mfu")}


def op_efficiency(spec: Spec, fit: StepFit | None = None) -> OpEfficiency:
    """The efficiencies the step model uses for this spec (fit or table -> calibration -> spec overrides)."""
    hw = spec.hardware
    gpu = hw.spec
    base = OP_EFFICIENCY.get(gpu.name.lower(), DEFAULT_EFFICIENCY)    # a custom GPU named like a row gets that row
    gemm, attn, hbm, source = base.gemm, base.attention, base.hbm, base.source
    fit = fit or current_fit()
    fam = family(gpu.name)
    if fam is not None and fam in fit.gemm_max and fam in fit.attn_max:
        gemm, attn, source = fit.gemm_max[fam], fit.attn_max[fam], f"backtest {fit.source}"
    shaped = True
    cal = load_calibration(hw.calibration, gpu.name, gpu.peak_tflops)
    if cal:
        source = f"calibration {hw.calibration}"
        if "efficiency" in cal:
            gemm = attn = cal["efficiency"]
        gemm = cal.get("gemm", gemm)
        attn = cal.get("attention", attn)
    if hw.efficiency is not None:
        gemm = attn = hw.efficiency
        source = "hardware.efficiency (blanket)"
    if hw.gemm_efficiency is not None:
        gemm, source = hw.gemm_efficiency, "hardware overrides"
    if hw.attention_efficiency is not None:
        attn, source = hw.attention_efficiency, "hardware overrides"
    if hw.hbm_efficiency is not None:
        hbm, source = hw.hbm_efficiency, "hardware overrides"
    shaped = not (cal or hw.efficiency is not None or hw.gemm_efficiency is not None
                  or hw.attention_efficiency is not None)
    return OpEfficiency(gemm, attn, hbm, base.comm, source, shaped)


# ----------------------------------------------------------------------------------------------------------
# Layout-independent constants
# ----------------------------------------------------------------------------------------------------------

# The one FLOP convention of the step model and of every efficiency it divides by (the table, a calibration
# file, `soraplan validate --device cuda`'s microbenchmarks): training FLOPs = 3 x forward for GEMMs and
# attention cores alike (model FLOPs), + the recomputed forward. Flash attention's backward executes 2.5 x
# its forward (it recomputes QK^T), so its efficiency is measured against 3 x forward too: the extra work
# lowers the measured efficiency instead of being counted twice or not at all.
TRAIN_FLOPS_PER_FORWARD = 3.0


@dataclass(frozen=True)
class OpWork:
    """Per-sample work by op class for one (model, attention, recompute) choice; layout-independent."""

    gemm_flops: float        # hardware GEMM FLOPs per sample (train + recomputed)
    attn_flops: float        # hardware attention-kernel FLOPs per sample (train + recomputed)
    gemm_rc_flops: float     # of which recomputed
    attn_rc_flops: float
    model_flops: float       # training model FLOPs per sample (3 x forward), for MFU
    hw_flops: float          # gemm_flops + attn_flops
    ew_out_tok: float        # elementwise bytes per token per layer outside the TP region (train, + recompute)
    ew_in_tok: float         # ... inside the TP region
    ew_out_rc_tok: float     # of which recompute
    ew_in_rc_tok: float
    ring_layers: tuple[int, ...]       # per layer: 1 if its keys always span CP ranks (full, temporal)
    frame_layers: tuple[int, ...]      # per layer: 1 if its keys are one frame (spatial): local iff grid T % cp == 0
    grid_t: int
    rc_full: int             # 1 with full recompute (forward comm runs again), else 0
    rc_core: int = 0         # 1 when the attention core runs forward again (full or selective): its CP exchange too


def elementwise_bytes(spec: Spec) -> tuple[float, float, float, float]:
    """Forward elementwise bytes per token per layer (outside TP, inside TP), averaged over the layers, and
    the same for the part a selective recompute re-runs. Element accesses (read + write), at B bytes:
      outside: norm1 2h, residual add 3h (x, y -> x+y; the adaLN gate is fused into it), norm2 2h,
               residual 3h, + cross-attn residual 3h, + modulate1/2 2h each (adaLN), + dropout 2h per site
      inside:  GELU 2f; unfused attention: softmax 2aK (+ dropout 2aK) per attention, K keys
    """
    m, k, v = spec.model, spec.kernels, spec.video
    h, f, a, B = m.hidden, m.ffn, m.heads, k.act_bytes
    drop = k.dropout > 0
    out = 2 + 3 + 2 + 3 + (3 if m.cross_attn else 0) + (4 if m.adaln != "none" else 0)
    out += 2 * (3 if m.cross_attn else 2) if drop else 0
    softmax = 0.0
    if k.attention_kernel == "unfused":
        keys = sum(attention_keys(spec, i) for i in range(m.layers)) / m.layers
        if m.cross_attn:
            keys += v.text_tokens
        softmax = (2 * a * keys + (2 * a * keys if drop else 0)) * B
    return out * h * B, 2 * f * B + softmax, 0.0, softmax


def op_work(spec: Spec) -> OpWork:
    m, p, k = spec.model, spec.parallel, spec.kernels
    fl = flops(spec)
    flash = k.attention_kernel == "flash"
    L = m.depth
    macs = [layer_macs(spec, i) for i in range(L)]
    lin, core = sum(x.linear for x in macs), sum(x.self_core + x.cross_core for x in macs)
    # forward FLOPs by class; flops.py's recompute split the same way
    gemm_fwd = fl.by_part["linear"] + fl.by_part["embed"]
    core_fwd = fl.by_part["self_attn_core"] + fl.by_part["cross_attn_core"]
    if p.recompute == "full":
        frac = fl.recompute / (2 * (lin + core)) if lin + core else 0.0   # = recompute_layers / layers per stage
        g_rc, c_rc = 2 * lin * frac, 2 * core * frac
    elif p.recompute == "selective":
        g_rc, c_rc = 0.0, float(fl.recompute)
    else:
        g_rc = c_rc = 0.0
    gemm, attn = TRAIN_FLOPS_PER_FORWARD * gemm_fwd + g_rc, TRAIN_FLOPS_PER_FORWARD * core_fwd + c_rc
    if not flash:   # unfused cores are batched GEMMs
        gemm, attn, g_rc, c_rc = gemm + attn, 0.0, g_rc + c_rc, 0.0
    out_f, in_f, _, sel_in = elementwise_bytes(spec)
    if p.recompute == "full":
        frac_l = fl.recompute / (2 * (lin + core)) if lin + core else 0.0
        rc_out, rc_in = out_f * frac_l, in_f * frac_l
    elif p.recompute == "selective":
        rc_out, rc_in = 0.0, sel_in
    else:
        rc_out = rc_in = 0.0
    kind = m.attention_kind
    ring = tuple(1 if kind == "full" or (kind == "spatial-temporal" and i % 2 == 1) else 0 for i in range(L))
    frame = tuple(1 if kind == "spatial-temporal" and i % 2 == 0 else 0 for i in range(L))
    return OpWork(gemm, attn, g_rc, c_rc, float(fl.train), gemm + attn, 3 * out_f + rc_out, 3 * in_f + rc_in, rc_out, rc_in,
                  ring, frame, spec.video.grid[0], 1 if p.recompute == "full" else 0,
                  1 if p.recompute in ("full", "selective") else 0)


@dataclass(frozen=True)
class HwConstants:
    peak: float              # FLOP/s
    hbm: float               # B/s
    intra: float             # B/s per GPU per direction
    inter: float
    gpn: int
    eff: OpEfficiency
    hidden: int
    seq: int
    layers: int
    sub_blocks: int          # 3 with cross-attention, else 2
    act_bytes: int
    grad_bytes: int
    param_bytes: int
    opt_bytes_per_param: float   # optimizer-step bytes per parameter of the shard
    comm: CommConstants | None = None   # the communication volumes' constants (planner/comm.py)
    fit: StepFit = StepFit()     # shape factors, collective efficiency and overheads (efficiency.py)
    head_dim: int = 128


def hw_constants(spec: Spec, fit: StepFit | None = None) -> HwConstants:
    k, gpu = spec.kernels, spec.hardware.spec
    g, pb = DTYPE_BYTES[k.grad_dtype], DTYPE_BYTES[k.param_dtype]
    # Adam: read grad twice (global norm + update), read + write master and moments, write the param
    opt = 2 * g + 2 * memory_constants(spec).optimizer_bytes_per_param + pb
    fit = fit or current_fit()
    return HwConstants(gpu.peak_tflops * 1e12, gpu.hbm_tbs * 1e12, gpu.intra_node_gbs * 1e9, gpu.inter_node_gbs * 1e9,
                       gpu.gpus_per_node, op_efficiency(spec, fit), spec.model.hidden, spec.seq_len, spec.model.depth,
                       3 if spec.model.cross_attn else 2, k.act_bytes, g, pb, float(opt), comm_constants(spec), fit,
                       spec.model.head_dim)


# ----------------------------------------------------------------------------------------------------------
# The formula core (scalars or numpy arrays)
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepLayout:
    """The layout `step_terms` prices: Python scalars for one layout, numpy arrays (one entry per layout) for many."""

    tp: Any
    pp: Any
    vpp: Any
    cp: Any
    dp: Any
    micro_batch: Any
    microbatches: Any           # micro-batches per optimizer step (per pipeline)
    sequence_parallel: Any
    distributed_optimizer: Any
    n_params: Any               # parameters per GPU
    cp_comm: Any = 0            # index into cp.CP_COMMS (p2p)


@dataclass(frozen=True)
class StepWork:
    """The layout-independent work `step_terms` prices (OpWork's numbers, see there), scalars or arrays, and
    `ring`: the layers of the first pipeline stage whose K/V exchange spans CP ranks."""

    gemm_flops: Any
    attn_flops: Any
    gemm_rc_flops: Any
    attn_rc_flops: Any
    model_flops: Any
    hw_flops: Any
    ew_out_tok: Any
    ew_in_tok: Any
    ew_out_rc_tok: Any
    ew_in_rc_tok: Any
    rc_full: Any
    ring: Any
    rc_core: Any = 0


STEP_FIELDS = ("compute_s", "gemm_s", "attention_s", "elementwise_s", "recompute_s", "tp_comm_s", "cp_comm_s",
               "cp_comm_total_s", "dp_comm_s", "dp_comm_total_s", "pp_bubble_s", "pp_p2p_s", "optimizer_s",
               "efficiency", "mfu", "samples_per_step", "time_s", "samples_per_s", "overhead_s")


def step_terms(xp: Any, c: HwConstants, w: StepWork, layout: StepLayout) -> dict[str, Any]:
    """Every step-time term for one layout (scalars, xp=ScalarOps) or many (arrays, xp=numpy).

    Args:
        xp: numpy or ScalarOps.
        c: hw_constants(spec).
        w: the work per sample of the (attention, recompute) choice.
        layout: the parallel layout.

    Returns:
        The STEP_FIELDS.
    """
    e = c.eff
    tp, pp, vpp, cp, dp = layout.tp, layout.pp, layout.vpp, layout.cp, layout.dp
    mb, m, sp, dist, n_params = (layout.micro_batch, layout.microbatches, layout.sequence_parallel,
                                 layout.distributed_optimizer, layout.n_params)
    mp = tp * pp * cp
    world = mp * dp
    d = xp.where(sp, tp, 1)
    s = c.seq // cp
    ls = c.layers // pp                               # layers per stage
    rank_samples = m * mb
    share = rank_samples / mp                         # samples' worth of FLOPs this rank runs per step
    g_rate, a_rate, h_rate = c.peak * e.gemm, c.peak * e.attention, c.hbm * e.hbm
    if e.shaped:                                      # small per-rank GEMMs, short sequences run slower
        g_rate = g_rate * gemm_shape(xp, c.fit, c.hidden / tp, s * mb)
        a_rate = a_rate * attention_shape(xp, c.fit, s, c.head_dim)
    gemm = w.gemm_flops * share / g_rate
    attn = w.attn_flops * share / a_rate
    tokens = rank_samples * s * ls                    # token-layers this rank runs per step
    ew = tokens * (w.ew_out_tok / d + w.ew_in_tok / tp) / h_rate
    compute = gemm + attn + ew
    recompute = (w.gemm_rc_flops * share / g_rate + w.attn_rc_flops * share / a_rate
                 + tokens * (w.ew_out_rc_tok / d + w.ew_in_rc_tok / tp) / h_rate)
    # communication: planner/comm.py's volumes (what validate measures), link bytes by comm.wire_factor
    k = c.comm
    assert k is not None, "HwConstants.comm: build the constants with hw_constants(spec)"
    # --- TP: per micro-batch, exposed
    bw_tp = xp.where(tp <= c.gpn, c.intra, c.inter) * e.comm
    act = s * mb * c.hidden * c.act_bytes             # one micro-batch's activation on this CP rank, bytes
    if e.shaped:                                      # collective efficiency by message size, in or across nodes
        bw_tp = bw_tp * comm_scale(xp, c, tp <= c.gpn, act)
    tp_comm = wire_bytes(tp_volumes(xp, k, tp, s, mb, ls, sp, w.rc_full * ls), tp) / bw_tp * m
    # --- CP: the variant's exchange in the layers whose keys span CP ranks; p2p hides behind attention
    bw_cp = xp.where(tp * cp <= c.gpn, c.intra, c.inter) * e.comm
    if e.shaped:
        bw_cp = bw_cp * comm_scale(xp, c, tp * cp <= c.gpn, act / tp)
    cp_layers = xp.where(layout.cp_comm == A2A, xp.where(cp > 1, ls, 0), w.ring)
    cp_vol = cp_volumes(xp, k, layout.cp_comm, cp, tp, s, mb, cp_layers, cp_layers * w.rc_core)
    cp_total = wire_bytes(cp_vol, cp) / bw_cp * m
    hide_cp = attn * w.ring / ls                   # attention time of the ring layers
    cp_exposed = xp.where(layout.cp_comm == P2P, xp.maximum(0.0, cp_total - hide_cp), cp_total)
    # --- DP: over the dp*cp ranks holding the same parameters, once per optimizer step
    g = dp * cp
    bw_dp = xp.where(tp * cp * dp <= c.gpn, c.intra, c.inter) * e.comm
    if e.shaped:
        bw_dp = bw_dp * comm_scale(xp, c, tp * cp * dp <= c.gpn, xp.minimum(n_params * c.grad_bytes, DP_BUCKET_BYTES))
    dp_vol = dp_volumes(xp, k, n_params, dp, cp, dist)
    rs = wire_factor("reduce_scatter_tensor", g) * dp_vol["reduce_scatter_tensor"] / bw_dp
    ag = wire_factor("all_gather_into_tensor", g) * dp_vol["all_gather_into_tensor"] / bw_dp
    ar = wire_factor("all_reduce", g) * dp_vol["all_reduce"] / bw_dp
    fwd_mb = (compute - recompute) / m / 3            # one micro-batch's forward on this rank
    bwd_mb = 2 * fwd_mb + recompute / m
    dp_total = xp.where(dist, rs + ag, ar)
    dp_exposed = xp.where(dist, xp.maximum(0.0, rs - bwd_mb) + xp.maximum(0.0, ag - fwd_mb), xp.maximum(0.0, ar - bwd_mb))
    # --- PP: bubble (p-1)/(v m) of the busy time; 2 m v boundary sends (fwd activation, bwd gradient)
    bubble = (pp - 1) / (vpp * m) * (compute + tp_comm + cp_exposed)
    bw_pp = xp.where(world <= c.gpn, c.intra, c.inter) * e.comm
    if e.shaped:
        bw_pp = bw_pp * comm_scale(xp, c, world <= c.gpn, act / d)
    p2p = xp.where(pp > 1, 2 * m * vpp * (act / d) / bw_pp, 0.0)
    # --- optimizer step on this rank's shard
    shard = n_params / xp.where(dist, dp * cp, 1)     # the distributed optimizer shards over dp*cp, as memory
    optimizer = shard * c.opt_bytes_per_param / h_rate
    busy = compute + tp_comm + cp_exposed + dp_exposed + bubble + p2p + optimizer
    over = overhead(xp, c.fit, ls, m, 3 + w.rc_core, world, c.gpn, busy) if e.shaped else 0.0 * busy
    total = busy + over
    samples = rank_samples * dp
    return {
        "compute_s": compute, "gemm_s": gemm, "attention_s": attn, "elementwise_s": ew, "recompute_s": recompute,
        "tp_comm_s": tp_comm, "cp_comm_s": cp_exposed, "cp_comm_total_s": cp_total, "dp_comm_s": dp_exposed,
        "dp_comm_total_s": dp_total, "pp_bubble_s": bubble, "pp_p2p_s": p2p, "optimizer_s": optimizer,
        "efficiency": w.hw_flops * share / c.peak / compute,
        "mfu": w.model_flops * samples / (total * world * c.peak),
        "samples_per_step": samples, "time_s": total, "samples_per_s": samples / total, "overhead_s": over,
    }


def comm_scale(xp: Any, c: HwConstants, inside_node: Any, message_bytes: Any) -> Any:
    """The fitted collective efficiency for this message size and link, relative to the table's `comm`."""
    return comm_efficiency(xp, c.fit, inside_node, message_bytes, c.intra, c.inter) / c.eff.comm


WORK_KEYS = ("gemm_flops", "attn_flops", "gemm_rc_flops", "attn_rc_flops", "model_flops", "hw_flops", "ew_out_tok",
             "ew_in_tok", "ew_out_rc_tok", "ew_in_rc_tok", "rc_full", "rc_core")


def ring_layers(w: OpWork, layers_per_stage: int, cp: int) -> int:
    """Layers of the first stage whose attention needs the CP ring exchange."""
    return sum(w.ring_layers[:layers_per_stage]) + (0 if w.grid_t % cp == 0 else sum(w.frame_layers[:layers_per_stage]))


@dataclass(frozen=True)
class StepTime:
    compute_s: float
    tp_comm_s: float
    cp_comm_s: float          # exposed
    dp_comm_s: float          # exposed
    pp_bubble_s: float
    pp_p2p_s: float
    optimizer_s: float
    efficiency: float         # achieved / peak over the compute time (GEMM + attention FLOPs / compute_s)
    mfu: float
    samples_per_step: int
    time_s: float
    samples_per_s: float
    gemm_s: float = 0.0
    attention_s: float = 0.0
    elementwise_s: float = 0.0
    recompute_s: float = 0.0          # part of compute_s
    cp_comm_total_s: float = 0.0      # before overlap
    dp_comm_total_s: float = 0.0      # before overlap
    gemm_efficiency: float = 0.0
    attention_efficiency: float = 0.0
    hbm_efficiency: float = 0.0
    comm_efficiency: float = 0.0
    efficiency_source: str = ""
    tp_over_node: bool = False        # tp > GPUs per node: TP traffic priced at the network bandwidth
    overhead_s: float = 0.0           # launch gaps, data loading, optimizer launches, stragglers (efficiency.py)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def step_time(spec: Spec, fit: StepFit | None = None) -> StepTime:
    """Every term of one optimizer step for `spec` (see the module docstring for the formulas).

    Args:
        spec: the run.
        fit: the step model's fitted parameters (default: the committed fit, data/step_fit.yaml).

    Returns:
        The StepTime.
    """
    p = spec.parallel
    c = hw_constants(spec, fit)
    w = op_work(spec)
    work = StepWork(**{key: getattr(w, key) for key in WORK_KEYS}, ring=ring_layers(w, spec.model.depth // p.pp, p.cp))
    layout = StepLayout(tp=p.tp, pp=p.pp, vpp=p.vpp, cp=p.cp, dp=p.dp_size, micro_batch=p.micro_batch,
                        microbatches=p.microbatches, sequence_parallel=p.sequence_parallel,
                        distributed_optimizer=p.distributed_optimizer, n_params=params_per_gpu(spec),
                        cp_comm=CP_COMMS.index(p.cp_comm))
    t = step_terms(ScalarOps, c, work, layout)
    t["samples_per_step"] = int(t["samples_per_step"])
    e = c.eff
    s_local, tokens = spec.seq_len // p.cp, spec.seq_len // p.cp * p.micro_batch
    gemm_eff = e.gemm * gemm_shape(ScalarOps, c.fit, c.hidden / p.tp, tokens) if e.shaped else e.gemm
    attn_eff = e.attention * attention_shape(ScalarOps, c.fit, s_local, c.head_dim) if e.shaped else e.attention
    return StepTime(**t, gemm_efficiency=gemm_eff, attention_efficiency=attn_eff, hbm_efficiency=e.hbm,
                    comm_efficiency=c.fit.comm_max["intra"] if e.shaped else e.comm, efficiency_source=e.source, tp_over_node=p.tp > c.gpn)
