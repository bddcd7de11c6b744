"""Shape-dependent kernel efficiencies and the non-kernel overheads of a training step.

The step model (`step.step_terms`) divides FLOPs by peak x efficiency and bytes by bandwidth x efficiency.
This module makes those efficiencies depend on what the kernels see, and adds what no kernel counts:

  GEMM        eff = gemm_max[family] / (1 + gemm_n0 / (h / tp) + gemm_t0 / (s * b))
              per-rank width h/tp after tensor parallelism, tokens s*b per micro-batch: small GEMMs run slower
  attention   eff = attn_max[family] / (1 + attn_s0 / (S / cp) + attn_d0 / head_dim)
              short sequences and narrow heads keep the flash kernel's tiles from filling the GPU
  collective  eff = comm_max[intra|inter] / (1 + latency * bandwidth / message bytes)
              a message of `latency * bandwidth` bytes reaches half the link rate (alpha-beta model)
  overheads   host / launch gaps: launch_s per layer and micro-batch pass (forward, backward, recomputed
              forward) on this rank; data loading: data_s per step; stragglers: the step grows by
              straggler * log2(GPUs / GPUs per node) once a job spans nodes (the slowest rank sets the pace at
              every synchronisation); optimizer: optimizer_launch_s per step (global norm, multi-tensor launches)

The free parameters (`StepFit`) are fitted on the backtest corpus's `tune` runs only
(benchmarks/fit_backtest.py) and committed as data in `data/step_fit.yaml` with the date and the runs used.
GPUs outside the fitted families keep the large-shape numbers of `step.OP_EFFICIENCY` and get the same shape
factors. A calibration file or a `hardware.*_efficiency` override replaces the efficiency as given (flat,
no shape factor): the user's number is taken as measured at the user's shapes.

All functions take `xp` (numpy or ScalarOps) so the search evaluates them on arrays of layouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

# GPU table rows that share kernels (cuBLAS / flash-attention generations)
FAMILIES: dict[str, str] = {"a100-40g": "ampere", "a100-80g": "ampere", "h100-sxm": "hopper", "h800": "hopper",
                            "h200": "hopper", "h100-pcie": "hopper"}

# NCCL's small-message latency per collective step, fixed (not fitted): ~10 us inside a node over NVLink,
# ~30 us across nodes over InfiniBand / RoCE (NCCL tests' latency-bound region).
LATENCY_INTRA_S = 10e-6
LATENCY_INTER_S = 30e-6
# Megatron's and FSDP's gradient buckets: ~40 MB messages however large the model (the DP collective's size).
DP_BUCKET_BYTES = 40e6


@dataclass(frozen=True)
class StepFit:
    """The step model's free parameters (see the module docstring for the formulas)."""

    gemm_max: dict[str, float] = field(default_factory=lambda: {"ampere": 0.70, "hopper": 0.70})
    attn_max: dict[str, float] = field(default_factory=lambda: {"ampere": 0.60, "hopper": 0.50})
    gemm_n0: float = 64.0           # per-rank width at which the GEMM runs at half its large-shape efficiency
    gemm_t0: float = 256.0          # tokens per micro-batch at which ...
    attn_s0: float = 512.0          # local sequence length at which attention runs at half its efficiency
    attn_d0: float = 16.0           # head dim at which ...
    comm_max: dict[str, float] = field(default_factory=lambda: {"intra": 0.80, "inter": 0.80})
    launch_s: float = 0.0           # host / launch gap per layer and micro-batch pass
    data_s: float = 0.0             # data loading per step (not hidden by the loader's prefetch)
    straggler: float = 0.0          # step growth per doubling of the node count
    optimizer_launch_s: float = 0.0
    date: str = ""
    tune_runs: tuple[str, ...] = ()
    source: str = "defaults"

    def with_values(self, **values: Any) -> "StepFit":
        """A copy with some parameters changed (flat names: gemm_max.ampere, comm_max.inter, ...)."""
        out: dict[str, Any] = {}
        for key, v in values.items():
            if "." in key:
                top, sub = key.split(".", 1)
                d = dict(out.get(top, getattr(self, top)))
                d[sub] = v
                out[top] = d
            else:
                out[key] = v
        return replace(self, **out)


FREE = ("gemm_max.ampere", "gemm_max.hopper", "attn_max.ampere", "attn_max.hopper", "gemm_n0", "gemm_t0",
        "attn_s0", "comm_max.intra", "comm_max.inter", "launch_s", "straggler")


def flat(fit: StepFit) -> dict[str, float]:
    """The fit's parameters by flat name (FREE and the fixed ones)."""
    out: dict[str, float] = {}
    for key in ("gemm_max", "attn_max", "comm_max"):
        for sub, v in getattr(fit, key).items():
            out[f"{key}.{sub}"] = float(v)
    for key in ("gemm_n0", "gemm_t0", "attn_s0", "attn_d0", "launch_s", "data_s", "straggler", "optimizer_launch_s"):
        out[key] = float(getattr(fit, key))
    return out


def parse_fit(doc: Any, where: str = "step_fit.yaml") -> StepFit:
    """A StepFit from the YAML document of `data/step_fit.yaml`.

    Args:
        doc: the parsed YAML ({date, tune_runs, params: {flat name: number}}).
        where: the name errors use.

    Returns:
        The StepFit; a missing or non-numeric parameter raises ValueError naming it.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
        raise ValueError(f"{where}: expected a mapping with 'params'")
    params = doc["params"]
    base = StepFit()
    known = flat(base)
    for key, v in params.items():
        if key not in known:
            raise ValueError(f"{where}: params.{key}: unknown parameter")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{where}: params.{key}: a finite number >= 0 expected, got {v!r}")
    fit = base.with_values(**{k: float(v) for k, v in params.items()})
    return replace(fit, date=str(doc.get("date", "")), tune_runs=tuple(doc.get("tune_runs") or ()),
                   source=f"fit {doc.get('date', '')} on {len(doc.get('tune_runs') or ())} tune runs")


@lru_cache(maxsize=1)
def current_fit() -> StepFit:
    """The committed fit (`data/step_fit.yaml`), read once per process.

    The file is JSON text (valid YAML too), read next to this module, so `soraplan estimate` needs neither a
    YAML parser nor importlib.resources (each costs more than the whole step model).
    """
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent / "data" / "step_fit.yaml"
    return parse_fit(json.loads(path.read_text(encoding="utf-8")))


def family(gpu: str) -> str | None:
    """The kernel family of a GPU table row, or None when the corpus has no runs of it."""
    return FAMILIES.get(gpu.lower())


def gemm_shape(xp: Any, fit: StepFit, width_per_rank: Any, tokens_per_mb: Any) -> Any:
    """The factor (0, 1] by which small per-rank GEMMs fall short of large ones."""
    return 1.0 / (1.0 + fit.gemm_n0 / width_per_rank + fit.gemm_t0 / tokens_per_mb)


def attention_shape(xp: Any, fit: StepFit, seq_local: Any, head_dim: int) -> Any:
    """The factor (0, 1] by which short sequences and narrow heads slow the attention kernel."""
    return 1.0 / (1.0 + fit.attn_s0 / seq_local + fit.attn_d0 / head_dim)


def comm_efficiency(xp: Any, fit: StepFit, inside_node: Any, message_bytes: Any, bw_intra: float,
                    bw_inter: float) -> Any:
    """Achieved / nominal link bandwidth of a collective moving `message_bytes` per call.

    Args:
        xp: numpy or ScalarOps.
        fit: the step fit.
        inside_node: True where the group fits in one node (NVLink), else it crosses the network.
        message_bytes: bytes per collective call (per rank).
        bw_intra, bw_inter: the nominal link bandwidths (B/s), for the latency-bound size.

    Returns:
        The efficiency, in (0, comm_max].
    """
    half = xp.where(inside_node, LATENCY_INTRA_S * bw_intra, LATENCY_INTER_S * bw_inter)
    top = xp.where(inside_node, fit.comm_max["intra"], fit.comm_max["inter"])
    return top / (1.0 + half / xp.maximum(message_bytes, 1.0))


def overhead(xp: Any, fit: StepFit, layers_per_stage: Any, microbatches: Any, passes: Any, world: Any,
             gpus_per_node: int, busy_s: Any) -> Any:
    """Seconds per step no kernel accounts for: launch gaps, data loading, optimizer launches, stragglers.

    Args:
        xp: numpy or ScalarOps.
        fit: the step fit.
        layers_per_stage: layers on this rank.
        microbatches: micro-batches per step.
        passes: 3 (forward, backward as 2) or 4 with a recomputed forward.
        world: GPUs in the job.
        gpus_per_node: GPUs per node.
        busy_s: the step time before overheads (stragglers scale it).

    Returns:
        The overhead seconds.
    """
    launch = fit.launch_s * layers_per_stage * microbatches * passes
    nodes = xp.maximum(world / gpus_per_node, 1.0)
    straggle = fit.straggler * xp_log2(xp, nodes) * busy_s
    return launch + fit.data_s + fit.optimizer_launch_s + straggle


def xp_log2(xp: Any, x: Any) -> Any:
    """log2 for numpy arrays and Python scalars."""
    if hasattr(xp, "log2"):
        return xp.log2(x)
    return math.log2(x)
