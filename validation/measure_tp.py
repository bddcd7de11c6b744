"""Per-rank measurements under tensor and context parallelism: N gloo processes on one CPU machine.

`run_tp(spec)` starts tp*cp copies of this module (`python -m soraplan.validation.measure_tp`) with
torchrun-style variables (RANK, WORLD_SIZE, MASTER_ADDR/PORT); every rank builds the model, counts its own
parameters (its TP shards + replicated tensors) and records the bytes its training forward saves for
backward, and writes rank<N>.json. The parent returns the list of rank results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .gloo_ranks import run_ranks, write_rank


def run_tp(specs: list, timeout_s: float = 300.0) -> list[list[dict[str, Any]]]:
    """Measure every TP rank of each spec (one set of tp gloo processes for all of them: they must share the
    TP size); per spec, the list of rank results. Raises RuntimeError with the failing rank's log."""
    world = specs[0].parallel.tp * specs[0].parallel.cp
    if any(s.parallel.tp * s.parallel.cp != world for s in specs):
        raise ValueError("run_tp: all specs must have the same tp*cp")
    return run_ranks("soraplan.validation.measure_tp", specs, world, timeout_s, "TP")


def _worker(spec_path: str, out_dir: str) -> None:
    from soraplan.models.quiet import quiet_megatron

    quiet_megatron()
    import torch

    from soraplan.planner.spec import Spec

    from soraplan.models.build import build_model
    from soraplan.models.loss import synthetic_batch, training_loss
    from .comm_count import comm_table, count_comm
    from .measure import record_saved
    from soraplan.models.parallel import destroy

    results = []
    for data in json.loads(Path(spec_path).read_text()):
        spec = Spec.model_validate(data)
        model = build_model(spec, device="cpu", seed=0)
        model.train()
        rank = torch.distributed.get_rank()
        g = torch.Generator().manual_seed(0)          # same batch on every TP and CP rank
        batch = synthetic_batch(spec, spec.parallel.micro_batch, "cpu", g)
        with count_comm() as comm:
            with record_saved(model) as saved:
                loss = training_loss(model, batch, generator=g)
            loss.backward()                             # the TP / CP collectives of backward run too
        from .measure_run import block_roots

        in_blocks = sum(saved.under(r) for r in block_roots(model))
        results.append({"rank": rank, "params": sum(p.numel() for p in model.parameters()),
                        "saved_blocks": in_blocks, "saved_outside": saved.total - in_blocks,
                        "comm": comm_table(comm)})
        del model, loss
    write_rank(out_dir, rank, results)
    destroy()


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
