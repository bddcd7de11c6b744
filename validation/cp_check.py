"""Context parallelism equals CP=1: loss and every gradient, for each K/V exchange (parallel.cp_comm:
p2p ring attention, all-gather, a2a Ulysses; a2a also under window and spatial-temporal attention). Each
CP rank holds a shard of the tokens, backpropagates loss / cp, and the gradients are summed over the CP
group. Run under torchrun; the world size is the CP size:

  python -m torch.distributed.run --nproc-per-node 2 -m soraplan.validation.cp_check

Both sides run in eval mode (no label dropout) so that they see identical inputs. Rows and exit code:
soraplan.validation.equivalence.
"""

from __future__ import annotations

import sys
from typing import Any

from .equivalence import EquivalenceCheck, Side, case_flags, loss_and_grads, run_equivalence

CASES: list[dict[str, Any]] = [
    {},                                                   # p2p (ring attention), the default
    {"adaln": "per-block"},
    {"adaln": "none"},
    {"model": "DiT-S/8", "layers": 2, "hidden": 64, "heads": 4, "precision": "fp32"},
    {"cp_comm": "all-gather"},
    {"cp_comm": "all-gather", "adaln": "per-block"},
    {"cp_comm": "a2a"},
    {"cp_comm": "a2a", "attention": "spatial-temporal"},
    {"cp_comm": "a2a", "attention": "window:1,2,2"},
    # the current block vocabulary (models/blocks.py): an MMDiT's text and video split into cp chunks each
    {"ffn_type": "swiglu", "norm": "rmsnorm", "qk_norm": "rmsnorm", "pos": "rope3d"},
    {"text": "mmdit", "single_layers": 2, "adaln": "per-block", "qk_norm": "rmsnorm", "pos": "rope3d",
     "text_proj": "linear"},
    {"text": "mmdit", "single_layers": 2, "adaln": "per-block", "qk_norm": "rmsnorm", "pos": "rope3d",
     "text_proj": "linear", "cp_comm": "a2a"},
    {"text": "in-sequence", "adaln": "expert", "adaln_dim": 32, "single_layers": 2, "qk_norm": "layernorm",
     "pos": "rope3d", "text_proj": "linear"},
    {"text": "mmdit", "text_hidden": 32, "text_ffn_hidden": 64, "adaln": "per-block", "norm": "rmsnorm",
     "qk_norm": "rmsnorm", "pos": "rope3d-learned", "text_proj": "linear", "cp_comm": "a2a"},
]

MODEL_SEED, BATCH_SEED = 9, 21


class ContextParallelCheck(EquivalenceCheck):
    """CP=1 against CP=world (parameters are replicated over CP: gradients compare one to one)."""

    axis = "cp"

    def specs(self, case: dict[str, Any], size: int) -> tuple[Any, Any]:
        from soraplan.planner.config import build_spec

        flags = case_flags(case)
        return build_spec(flags=flags), build_spec(flags={**flags, "cp": size})

    def reference(self, spec) -> Side:
        return loss_and_grads(spec, MODEL_SEED, BATCH_SEED, eval_mode=True)

    def parallel(self, spec, ref: Side) -> Side:
        return loss_and_grads(spec, MODEL_SEED, BATCH_SEED, eval_mode=True)


if __name__ == "__main__":
    sys.exit(run_equivalence(CASES, ContextParallelCheck()))
