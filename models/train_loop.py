"""Gradient finalisation for TP/SP and DP (what Megatron's DDP + finalize_model_grads do, in plain
collectives that run on gloo and nccl alike).

  sequence parallel: replicated params that see only a sequence shard (LayerNorm affine, RowParallel
  biases: marked `sequence_parallel`) -> all-reduce (sum) over the TP group.
  head-shard params: replicated params that see only this TP rank's heads (per-head q/k norm weights:
  marked `tp_head_shard`) -> all-reduce (sum) over the TP group, with or without sequence parallelism.
  data and context parallel: every gradient -> one all-reduce (sum) over the dp·cp ranks that hold the
  same parameters (Megatron's data-parallel group with CP), coalesced into one flat buffer per dtype, then
  scaled by 1/dp (the data-parallel mean; CP ranks each backpropagated loss / cp). With the distributed
  optimizer (models/zero.py) this step is its reduce-scatter instead: `data_parallel=False`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _allreduce_flat(grads: list[torch.Tensor], group, scale: float = 1.0) -> None:
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat, group=group)
    if scale != 1.0:
        flat.mul_(scale)
    for g, s in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        g.copy_(s)


def finalize_grads(model: torch.nn.Module, spec, data_parallel: bool = True) -> None:
    """PP sum of the every-stage embedders' grads, TP all-reduce of sequence-parallel (and head-shard)
    params' grads, then (with `data_parallel`) the dp·cp all-reduce of all grads, scaled by 1/dp.

    Args:
        model: this rank's module.
        spec: the run's spec.
        data_parallel: False when the distributed optimizer reduce-scatters the gradients itself.
    """
    from megatron.core import parallel_state as ps

    if ps.get_pipeline_model_parallel_world_size() > 1:
        # each stage's copy of the conditioning embedders saw only its own layers: sum over the stages
        from .build import every_stage_params

        every = [q for _, q in every_stage_params(model)]
        for q in every:
            if q.grad is None:
                q.grad = torch.zeros_like(q)
        _allreduce_flat([q.grad for q in every], ps.get_pipeline_model_parallel_group())
    params = [p for p in model.parameters() if p.grad is not None]
    if ps.get_tensor_model_parallel_world_size() > 1:
        sp = spec.parallel.sequence_parallel
        _allreduce_flat([p.grad for p in params if getattr(p, "tp_head_shard", False)
                         or (sp and getattr(p, "sequence_parallel", False))], ps.get_tensor_model_parallel_group())
    dp = ps.get_data_parallel_world_size()
    if data_parallel and dp * ps.get_context_parallel_world_size() > 1:
        # every CP rank backpropagated loss / cp through its own tokens (summed over CP), DP ranks average
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in params:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for grads in by_dtype.values():
            _allreduce_flat(grads, ps.get_data_parallel_group(with_context_parallel=True), 1.0 / dp)
