"""Pipeline parallelism of the current block vocabulary (models/blocks.py) equals PP=1: loss and every gradient
over the same micro-batches, through megatron's 1F1B schedule. Run under torchrun; the world size is the
number of stages:

  python -m torch.distributed.run --nproc-per-node 2 -m soraplan.validation.pp_check_blocks

The cases put a stage boundary inside the main stack, at the MMDiT -> single-stream hand-over and inside the
single-stream blocks (the stages carry [text; video] as one tensor). Same reference and comparison as
validation/pp_check.py; a stage's blocks are renamed to the PP=1 model's by their global index.
"""

from __future__ import annotations

import sys
from typing import Any

from .equivalence import run_equivalence
from .pp_check import PipelineParallelCheck

MMDIT = {"text": "mmdit", "adaln": "per-block", "qk_norm": "rmsnorm", "pos": "rope3d", "text_proj": "linear"}
CASES: list[dict[str, Any]] = [
    # 4 main blocks: 2 per stage
    {"ffn_type": "swiglu", "norm": "rmsnorm", "kv_heads": 2, "qk_norm": "rmsnorm", "pos": "rope3d"},
    # 2 double + 2 single: the hand-over is the stage boundary
    {**MMDIT, "layers": 2, "single_layers": 2},
    # 3 double + 1 single: the hand-over inside the last stage; 1 double + 3 single: inside the first
    {**MMDIT, "layers": 3, "single_layers": 1, "ffn_type": "geglu"},
    {**MMDIT, "layers": 1, "single_layers": 3},
    # text in the sequence with expert adaLN and single-stream blocks, under TP=1
    {"text": "in-sequence", "adaln": "expert", "adaln_dim": 32, "layers": 2, "single_layers": 2, "pos": "rope3d",
     "text_proj": "linear"},
]


class BlocksPipelineCheck(PipelineParallelCheck):
    """PP=1 against PP=world for CurrentDiT: the case's own layer counts (depth 4)."""

    def specs(self, case: dict[str, Any], size: int) -> tuple[Any, Any]:
        from soraplan.planner.config import build_spec

        from .equivalence import case_flags
        from .pp_check import LAYERS, MICRO_BATCHES

        flags = case_flags({"layers": LAYERS, **case})
        return (build_spec(flags={**flags, "global_batch": MICRO_BATCHES}),
                build_spec(flags={**flags, "pp": size, "global_batch": MICRO_BATCHES}))

    def stage_name(self, name: str, spec, model) -> str:
        """This stage's parameter name -> the PP=1 model's (the blocks number their own stacks)."""
        return global_name(name, model)


def global_name(name: str, model) -> str:
    """A stage's parameter name -> the PP=1 model's (`blocks.i` / `single_blocks.i` are numbered from 0 on
    every stage).

    Args:
        name: a parameter name of this stage's CurrentDiT.
        model: the stage.
    Returns:
        The same parameter's name in the PP=1 model.
    """
    parts = name.split(".")
    offset = {"blocks": model.block_range[0], "single_blocks": model.single_range[0]}.get(parts[0])
    if offset is not None:
        parts[1] = str(int(parts[1]) + offset)
    return ".".join(parts)


if __name__ == "__main__":
    sys.exit(run_equivalence(CASES, BlocksPipelineCheck()))
