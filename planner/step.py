"""Step time: compute at a stated efficiency plus exposed TP/CP/DP/PP communication and the bubble.

A first model (issue D refines and calibrates it). Every term is returned so the CLI can print it.
  compute   = hardware FLOPs of this GPU's share / (peak * efficiency)
  tp        = per layer and micro-batch, fwd+bwd: with SP 2x(all-gather + reduce-scatter) per sub-block,
              without SP 2x all-reduce; ring cost (t-1)/t * bytes / bandwidth (all-reduce twice that)
  cp        = ring exchange of K/V, (cp-1) hops fwd, twice that bwd; hidden behind attention compute
  dp        = gradient reduce-scatter + parameter all-gather, hidden behind backward compute
  pp        = bubble (p-1)/(v*m) of the compute + point-to-point activations
  optimizer = Adam's reads/writes of its state / HBM bandwidth
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .flops import flops
from .params import params_per_gpu
from .spec import DTYPE_BYTES, Spec


@dataclass(frozen=True)
class StepTime:
    compute_s: float
    tp_comm_s: float
    cp_comm_s: float
    dp_comm_s: float
    pp_bubble_s: float
    pp_p2p_s: float
    optimizer_s: float
    efficiency: float
    mfu: float
    samples_per_step: int
    time_s: float
    samples_per_s: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def load_calibration(path: str | None, gpu: str) -> float | None:
    """Efficiency from a calibration JSON written by `soraplan validate --device cuda` (same GPU only)."""
    if not path:
        return None
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        raise ValueError(f"hardware.calibration: cannot read calibration file {p}") from None
    if str(data.get("gpu", gpu)).lower() != gpu.lower():
        raise ValueError(f"hardware.calibration: {p} was measured on {data.get('gpu')!r}, not {gpu!r}")
    eff = data.get("efficiency")
    if not isinstance(eff, (int, float)) or not 0 < eff <= 1:
        raise ValueError(f"hardware.calibration: {p} has no efficiency in (0, 1]")
    return float(eff)


def _ring(nbytes: float, n: int, bw_gbs: float) -> float:
    return 0.0 if n <= 1 else (n - 1) / n * nbytes / (bw_gbs * 1e9)


def step_time(spec: Spec) -> StepTime:
    p, m, k, hw = spec.parallel, spec.model, spec.kernels, spec.hardware
    gpu = hw.spec
    eff = load_calibration(hw.calibration, gpu.name) or hw.efficiency
    fl = flops(spec)
    peak = gpu.peak_tflops * 1e12
    samples_per_rank = p.microbatches * p.micro_batch
    model_parallel = p.tp * p.pp * p.cp
    compute = fl.hardware * samples_per_rank / model_parallel / (peak * eff)
    B = k.act_bytes
    s = spec.seq_len // p.cp
    layers_per_stage = m.layers // p.pp
    # --- TP ---
    tp_bw = gpu.intra_node_gbs if p.tp <= gpu.gpus_per_node else gpu.inter_node_gbs
    sub_blocks = 3 if m.cross_attn else 2
    act = s * p.micro_batch * m.hidden * B
    per_collective = _ring(act, p.tp, tp_bw) * (1 if p.sequence_parallel else 1)  # AG+RS == one all-reduce
    tp = 2 * sub_blocks * 2 * per_collective * layers_per_stage * p.microbatches
    # --- CP ---
    cp_bw = gpu.intra_node_gbs if p.tp * p.cp <= gpu.gpus_per_node else gpu.inter_node_gbs
    kv = 2 * s * p.micro_batch * m.hidden * B / p.tp
    cp_comm = 3 * (p.cp - 1) * kv / (cp_bw * 1e9) * layers_per_stage * p.microbatches if p.cp > 1 else 0.0
    attn_compute = 3 * fl.by_part["self_attn_core"] * samples_per_rank / model_parallel / (peak * eff)
    cp_exposed = max(0.0, cp_comm - attn_compute)
    # --- DP ---
    n = params_per_gpu(spec)
    dp_bw = gpu.intra_node_gbs if model_parallel * p.dp_size <= gpu.gpus_per_node else gpu.inter_node_gbs
    grad_bytes = n * DTYPE_BYTES[k.grad_dtype]
    param_bytes = n * DTYPE_BYTES[k.param_dtype]
    dp_comm = _ring(grad_bytes, p.dp_size, dp_bw) + (_ring(param_bytes, p.dp_size, dp_bw) if p.distributed_optimizer
                                                      else _ring(grad_bytes, p.dp_size, dp_bw))
    backward = compute * 2 / 3
    dp_exposed = max(0.0, dp_comm - backward)
    # --- PP ---
    bubble = (p.pp - 1) / (p.vpp * p.microbatches) * compute if p.pp > 1 else 0.0
    pp_bw = gpu.intra_node_gbs if p.tp * p.cp * p.pp <= gpu.gpus_per_node else gpu.inter_node_gbs
    p2p = 2 * p.microbatches * p.vpp * act / (p.tp if p.sequence_parallel else 1) / (pp_bw * 1e9) if p.pp > 1 else 0.0
    # --- optimizer: read param, grad, master, m, v; write param, master, m, v ---
    opt_params = n / (p.dp_size if p.distributed_optimizer else 1)
    opt_bytes = opt_params * (2 * 2 + 4 + 3 * 4 * 2)
    optimizer = opt_bytes / (gpu.hbm_tbs * 1e12)
    total = compute + tp + cp_exposed + dp_exposed + bubble + p2p + optimizer
    samples = p.global_batch_size
    mfu = fl.train * samples / (total * p.world * peak)
    return StepTime(compute, tp, cp_exposed, dp_exposed, bubble, p2p, optimizer, eff, mfu, samples, total, samples / total)
