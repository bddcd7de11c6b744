"""Per-rank measurements under pipeline parallelism: pp gloo processes on one CPU machine, each running one
training step through Megatron-core's 1F1B schedule (interleaved when vpp > 1) over the spec's
micro-batches.

`run_pp(specs)` starts pp copies of this module (`python -m soraplan.validation.measure_pp`); every rank
builds its stage (its vpp model chunks), counts its parameters, runs `models.pipeline.pipeline_step` and
`models.train_loop.finalize_grads` and records
  * the peak of live saved-for-backward bytes across the schedule (`LiveSaved`): a storage counts from the
    first time autograd saves it (pack) until its last saved reference is released (after its backward),
    parameters and buffers excluded, so the peak is what the in-flight micro-batches hold at once;
  * the bytes torch.distributed moved, per kind and group (`comm_count`: the boundary isend / irecv of
    Megatron's P2P communicator under "PP").
`pp_rows` compares them with the planner: `params.stage_params` (exact), `activations.stage_activations`
at that stage (1 %) and `comm.comm_bytes` at that stage (exact).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .gloo_ranks import run_ranks, write_rank


class LiveSaved:
    """Live saved-for-backward bytes while a block runs, and their peak (see the module docstring).

    Args:
        exclude: storage keys never counted (parameters and buffers).
    """

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.refs: dict[int, int] = {}
        self.live = 0
        self.peak = 0
        self.sizes: dict[int, int] = {}

    def pack(self, t):
        key = t.untyped_storage()._cdata
        if key in self.exclude:
            return t
        n = self.refs.get(key, 0)
        if n == 0:
            self.sizes[key] = t.untyped_storage().nbytes()
            self.live += self.sizes[key]
            self.peak = max(self.peak, self.live)
        self.refs[key] = n + 1
        return _Held(self, key, t)

    @staticmethod
    def unpack(held):
        return held.tensor if isinstance(held, _Held) else held

    def release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= self.sizes.pop(key)

    def hooks(self):
        import torch

        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


class _Held:
    """One saved reference: holds the tensor (its storage cannot be reused while counted) and tells the
    counter when autograd drops it."""

    __slots__ = ("counter", "key", "tensor")

    def __init__(self, counter: LiveSaved, key: int, tensor) -> None:
        self.counter, self.key, self.tensor = counter, key, tensor

    def __del__(self) -> None:
        self.counter.release(self.key)


def run_pp(specs: list, timeout_s: float = 600.0) -> list[list[dict[str, Any]]]:
    """Measure every pipeline rank of each spec (one set of gloo processes; the specs share pp and have
    tp = cp = dp = 1); per spec, the list of rank results. Raises RuntimeError with the failing rank's log."""
    world = specs[0].parallel.pp
    if any(s.parallel.pp != world or s.parallel.world != world for s in specs):
        raise ValueError("run_pp: all specs must have the same pp and tp = cp = dp = 1")
    return run_ranks("soraplan.validation.measure_pp", specs, world, timeout_s, "PP")


def measure_rank(spec) -> dict[str, Any]:
    """This rank's parameters, peak live saved bytes and communication over one pipeline step of `spec`."""
    import torch
    from megatron.core import parallel_state as ps

    from soraplan.models.build import build_model
    from soraplan.models.pipeline import pipeline_step
    from soraplan.models.train_loop import finalize_grads

    from .comm_count import comm_table, count_comm
    from .pp_check import micro_batches

    model = build_model(spec, device="cpu", seed=0)
    model.train()
    items = micro_batches(spec, spec.parallel.microbatches)
    skip = {q.untyped_storage()._cdata for q in model.parameters()} | {
        q.untyped_storage()._cdata for q in model.buffers()}
    live = LiveSaved(skip)
    with count_comm() as comm:
        with live.hooks():
            pipeline_step(model, spec, items)
        finalize_grads(model, spec)
    return {"rank": torch.distributed.get_rank(), "stage": ps.get_pipeline_model_parallel_rank(),
            "params": sum(q.numel() for q in model.parameters()), "saved_peak": live.peak,
            "saved_left": live.live, "comm": comm_table(comm)}


def pp_rows(config: str, spec, ranks: list[dict[str, Any]]) -> list:
    """Per-rank rows of a pipeline run: stage parameters (exact), the peak saved bytes of the in-flight
    micro-batches (1 %), communication bytes per kind and group (exact)."""
    from soraplan.planner.activations import stage_activations
    from soraplan.planner.comm import comm_bytes
    from soraplan.planner.params import stage_params

    from .measure_compare import ACTIVATION_TOL, Row, layout_of

    lay = layout_of(spec)
    rows = []
    for r in ranks:
        rank, stage = r["rank"], r["stage"]
        rows.append(Row(config, f"rank {rank} params (stage {stage})", r["params"], stage_params(spec, stage), 0,
                        "params", lay, rank))
        rows.append(Row(config, f"rank {rank} peak saved bytes, in-flight micro-batches (stage {stage})",
                        r["saved_peak"], stage_activations(spec, stage)["total"], ACTIVATION_TOL, "B", lay, rank))
        predicted = comm_bytes(spec, stage=stage)
        measured = r["comm"]
        rows += [Row(config, f"comm bytes {key}", measured.get(key, 0), predicted.get(key, 0), 0, "B", lay, rank)
                 for key in sorted(set(measured) | set(predicted))]
    return rows


def _worker(spec_path: str, out_dir: str) -> None:
    from soraplan.models.quiet import quiet_megatron

    quiet_megatron()
    import torch

    from soraplan.models.parallel import destroy
    from soraplan.planner.spec import Spec

    results = []
    for data in json.loads(Path(spec_path).read_text()):
        results.append(measure_rank(Spec.model_validate(data)))
    rank = torch.distributed.get_rank()
    write_rank(out_dir, rank, results)
    destroy()


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
