"""Per-rank measurements under data parallelism with the trainer's optimizer: dp·tp·cp gloo processes.

`run_dp(specs)` starts spec.parallel.world copies of this module (`python -m soraplan.validation.measure_dp`)
with torchrun-style variables. Every rank builds the model and the optimizer exactly as `soraplan train`
does (`models.zero.build_optimizer`: the flat-buffer distributed optimizer over the dp·cp ranks, or AdamW
after a dp·cp all-reduce), runs one micro-batch's forward + backward (its own samples per DP rank) and one
optimizer step, and records:
  params          its parameter count
  optimizer       the bytes of optimizer state it holds, read from the optimizer's own state after the step
  comm            bytes per kind and group of the forward + backward (validation.comm_count)
  comm_step       bytes per kind and group of the gradient reduction and the optimizer step
`dp_rows` compares them with `params_per_gpu`, `memory(spec).optimizer`, `comm.comm_bytes` and
`comm.dp_comm_bytes`, all exactly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .gloo_ranks import run_ranks, write_rank


def run_dp(specs: list, timeout_s: float = 300.0) -> list[list[dict[str, Any]]]:
    """Measure every rank of each spec (one set of processes for all: they must share the world size);
    per spec, the list of rank results. Raises RuntimeError with the failing rank's log."""
    world = specs[0].parallel.world
    if any(s.parallel.world != world for s in specs):
        raise ValueError("run_dp: all specs must have the same world size")
    return run_ranks("soraplan.validation.measure_dp", specs, world, timeout_s, "DP")


def dp_rows(config: str, spec, ranks: list[dict[str, Any]]) -> list:
    """Per rank: parameters, optimizer-state bytes, forward + backward communication (as the TP / CP rows)
    and the optimizer step's communication (DP-CP, and under SP the TP gradient sync: `comm bytes <kind>
    <group>, optimizer step`), against the planner; for the current block vocabulary only the DP-CP part
    is checked and the rest reported."""
    from soraplan.planner.comm import dp_comm_bytes, sp_grad_bytes
    from soraplan.planner.memory import memory
    from soraplan.planner.params import params_per_gpu

    from .measure_compare import Row, comm_rows, layout_of

    lay = layout_of(spec)
    predicted = dp_comm_bytes(spec)
    rows: list = []
    for r in ranks:
        rank = r["rank"]
        rows.append(Row(config, f"rank {rank} params", r["params"], params_per_gpu(spec), 0, "params", lay, rank))
        rows.append(Row(config, f"rank {rank} optimizer state bytes", r["optimizer"], memory(spec).optimizer, 0, "B",
                        lay, rank))
        rows += comm_rows(config, spec, r["comm"], lay, rank)
        step = r["comm_step"]
        for key in sorted(set(predicted) | {k for k in step if k.endswith(" DP-CP")}):
            rows.append(Row(config, f"comm bytes {key}", step.get(key, 0), predicted.get(key, 0), 0, "B", lay, rank))
        others = {k for k in step if not k.endswith(" DP-CP")}
        if spec.model.extended:
            rows += [Row(config, f"comm bytes {key}, optimizer step (reported)", step[key], None, None, "B", lay, rank)
                     for key in sorted(others)]
            continue
        sync = sp_grad_bytes(spec)
        rows += [Row(config, f"comm bytes {key}, optimizer step", step.get(key, 0), sync.get(key, 0), 0, "B", lay, rank)
                 for key in sorted(others | set(sync))]
    return rows


def _worker(spec_path: str, out_dir: str) -> None:
    from soraplan.models.quiet import quiet_megatron

    quiet_megatron()
    import torch
    from megatron.core import parallel_state as ps

    from soraplan.models.build import build_model
    from soraplan.models.loss import synthetic_batch, training_loss
    from soraplan.models.parallel import destroy
    from soraplan.models.train_loop import finalize_grads
    from soraplan.models.zero import build_optimizer, state_bytes
    from soraplan.planner.spec import Spec

    from .comm_count import comm_table, count_comm

    results = []
    rank = 0
    for data in json.loads(Path(spec_path).read_text()):
        spec = Spec.model_validate(data)
        model = build_model(spec, device="cpu", seed=0)
        model.train()
        rank = torch.distributed.get_rank()
        optimizer, sharded = build_optimizer(model, spec, lr=1e-3)
        g = torch.Generator().manual_seed(100 + ps.get_data_parallel_rank())    # own samples per DP rank
        batch = synthetic_batch(spec, spec.parallel.micro_batch, "cpu", g)
        optimizer.zero_grad(set_to_none=True)
        with count_comm() as comm:
            loss = training_loss(model, batch, generator=g)
            (loss / ps.get_context_parallel_world_size()).backward()
        with count_comm() as comm_step:
            finalize_grads(model, spec, data_parallel=not sharded)
            optimizer.step()
        results.append({"rank": rank, "params": sum(p.numel() for p in model.parameters()),
                        "optimizer": state_bytes(optimizer), "sharded": sharded,
                        "comm": comm_table(comm), "comm_step": comm_table(comm_step)})
        del model, optimizer, loss
    write_rank(out_dir, rank, results)
    destroy()


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
