"""Tensor (and sequence) parallelism equals TP=1: loss and every gradient, each TP shard's gradient against
its slice of the TP=1 gradient. Run under torchrun; the world size is the TP size:

  python -m torch.distributed.run --nproc-per-node 2 -m soraplan.validation.tp_check

Every rank builds both models from the same seed (Megatron's CPU initialisation builds the full weight and
splits it, so shards are slices). Every reference gradient must be nonzero: zero-initialised parameters get
random values first. Rows and exit code: soraplan.validation.equivalence.
"""

from __future__ import annotations

import sys
from typing import Any

from .equivalence import EquivalenceCheck, Side, case_flags, loss_and_grads, run_equivalence, tp_shard

CASES: list[dict[str, Any]] = [
    {"sequence_parallel": True},
    {"sequence_parallel": False},
    {"adaln": "per-block", "sequence_parallel": True},
    {"adaln": "none", "sequence_parallel": True},
    {"attention": "window:2,2,2", "sequence_parallel": True},
    {"attention": "spatial-temporal", "attention_kernel": "unfused", "sequence_parallel": True},
    {"model": "DiT-S/8", "layers": 2, "hidden": 64, "heads": 4, "precision": "fp32", "sequence_parallel": True},
    # the current block vocabulary (models/blocks.py): a fused projection's sections are split per TP rank
    {"ffn_type": "swiglu", "norm": "rmsnorm", "sequence_parallel": False},
    {"text": "in-sequence", "single_layers": 2, "ffn_type": "swiglu", "adaln": "per-block", "sequence_parallel": False},
    {"kv_heads": 2, "pos": "rope3d", "qk_norm": "rmsnorm", "sequence_parallel": False},
    {"text": "mmdit", "single_layers": 2, "adaln": "per-block", "ffn_type": "geglu", "qk_norm": "rmsnorm",
     "kv_heads": 2, "pos": "rope3d", "sequence_parallel": False},
    # ... and with sequence parallelism: the blocks on sequence shards (an MMDiT's text stream too)
    {"ffn_type": "swiglu", "norm": "rmsnorm", "kv_heads": 2, "qk_norm": "rmsnorm", "pos": "rope3d",
     "sequence_parallel": True},
    {"text": "in-sequence", "adaln": "expert", "adaln_dim": 32, "single_layers": 2, "pos": "rope3d",
     "qk_norm": "layernorm", "text_proj": "linear", "sequence_parallel": True},
    {"text": "mmdit", "single_layers": 2, "adaln": "per-block", "ffn_type": "geglu", "qk_norm": "rmsnorm",
     "kv_heads": 2, "pos": "rope3d", "sequence_parallel": True},
    {"text": "mmdit", "single_layers": 1, "adaln": "per-block", "ffn_type": "swiglu", "norm": "rmsnorm", "qk_norm": "rmsnorm",
     "pos": "rope3d-learned", "text_proj": "linear", "sequence_parallel": True},
    {"vocab_size": 96, "tokens": 32, "text": "none", "adaln": "none", "time_mlp": False, "causal": True,
     "kv_heads": 2, "ffn_type": "swiglu", "norm": "rmsnorm", "norm_affine": True, "pos": "rope3d",
     "sequence_parallel": True},
]

MODEL_SEED, BATCH_SEED = 7, 11


class TensorParallelCheck(EquivalenceCheck):
    """TP=1 (no sequence parallelism) against TP=world."""

    axis = "tp"
    require_nonzero_grads = True

    def specs(self, case: dict[str, Any], size: int) -> tuple[Any, Any]:
        from soraplan.planner.config import build_spec

        flags = case_flags(case)
        ref = {k: v for k, v in flags.items() if k != "sequence_parallel"}
        return build_spec(flags={**ref, "tp": 1}), build_spec(flags={**flags, "tp": size})

    def reference(self, spec) -> Side:
        return loss_and_grads(spec, MODEL_SEED, BATCH_SEED)

    def parallel(self, spec, ref: Side) -> Side:
        return loss_and_grads(spec, MODEL_SEED, BATCH_SEED)

    def reference_grad(self, name: str, param, ref: Side):
        from megatron.core import parallel_state as ps

        r = ref.params[name].grad
        if getattr(param, "tensor_model_parallel", False):
            r = tp_shard(r, param, ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank())
        return r


if __name__ == "__main__":
    sys.exit(run_equivalence(CASES, TensorParallelCheck()))
