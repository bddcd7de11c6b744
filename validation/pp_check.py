"""Pipeline parallelism through megatron's 1F1B schedule, and its interleaved form (vpp model chunks per
rank), equals PP=1: loss and every gradient over the same micro-batches. Run under torchrun; the world size
is the number of stages:

  python -m torch.distributed.run --nproc-per-node 2 -m soraplan.validation.pp_check

Every rank builds the PP=1 model (4 layers) and trains it on 4 micro-batches; its stage of the pipeline
copies the matching parameters (layer i of chunk v on stage s is layer (v * pp + s) * layers/(pp*vpp) + i
of the reference; vpp = 1: layer s * layers/pp + i) and runs the schedule on the same micro-batches. Rows and exit code: soraplan.validation.equivalence.
"""

from __future__ import annotations

import sys
from typing import Any

from .equivalence import EquivalenceCheck, Side, case_flags, fill_zero_params, run_equivalence

CASES: list[dict[str, Any]] = [{}, {"adaln": "per-block"}, {"adaln": "none"}, {"attention": "spatial-temporal"},
                               {"vpp": 2}, {"vpp": 2, "adaln": "per-block"}]

LAYERS = 4               # two per stage at pp=2
MICRO_BATCHES = 4
MODEL_SEED = 5
FIRST_BATCH_SEED = 100   # micro-batch i draws data and noise from seed 100 + i


def micro_batches(spec, n: int) -> list[tuple[dict, Any]]:
    """n synthetic micro-batches as (model inputs, target) pairs, as the trainer feeds the pipeline.

    Args:
        spec: gives the shapes and spec.parallel.micro_batch samples per micro-batch.
        n: how many.
    Returns:
        [(inputs for VideoDiT.forward, regression target)] * n.
    """
    import torch

    from soraplan.models.loss import diffusion_inputs, model_kwargs, synthetic_batch

    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(FIRST_BATCH_SEED + i)
        batch = synthetic_batch(spec, spec.parallel.micro_batch, "cpu", g)
        x_t, ts, target = diffusion_inputs(batch, "flow", g)
        out.append(({"latents": x_t, "timesteps": ts, **model_kwargs(batch)}, target))
    return out


class PipelineParallelCheck(EquivalenceCheck):
    """PP=1 against PP=world; the reference's micro-batches and weights are reused by the pipeline."""

    axis = "pp"

    def specs(self, case: dict[str, Any], size: int) -> tuple[Any, Any]:
        from soraplan.planner.config import build_spec

        flags = case_flags(case, {"layers": LAYERS})
        ref_flags = {k: v for k, v in flags.items() if k != "vpp"}
        return (build_spec(flags={**ref_flags, "global_batch": MICRO_BATCHES}),
                build_spec(flags={**flags, "pp": size, "global_batch": MICRO_BATCHES}))

    def reference(self, spec) -> Side:
        from soraplan.models.build import build_model
        from soraplan.models.loss import mse

        ref = build_model(spec, device="cpu", seed=MODEL_SEED)
        # zero-initialised parameters seeded by name length: the layers' copies start equal (their xavier
        # weights differ), so a stage that maps its layers to the wrong reference layers still fails
        fill_zero_params(ref, seed_of=len)
        items = micro_batches(spec, MICRO_BATCHES)
        loss = sum(float(mse(ref(**x), t)) for x, t in items) / len(items)
        for x, t in items:
            (mse(ref(**x), t) / len(items)).backward()
        return Side(loss, dict(ref.named_parameters()), inputs=items)

    def stage_name(self, name: str, spec, model) -> str:
        """This stage's parameter name -> the reference model's."""
        return reference_name(name, spec)

    def parallel(self, spec, ref: Side) -> Side:
        import torch

        from soraplan.models.build import build_model
        from soraplan.models.pipeline import pipeline_step
        from soraplan.models.train_loop import finalize_grads

        model = build_model(spec, device="cpu", seed=MODEL_SEED)
        params = {self.stage_name(name, spec, model): q for name, q in model.named_parameters()}
        with torch.no_grad():
            for name, q in params.items():
                q.copy_(ref.params[name])
        loss = float(pipeline_step(model, spec, ref.inputs))
        finalize_grads(model, spec)
        return Side(loss, params)     # keyed by the reference's names: gradients compare one to one


def reference_name(name: str, spec) -> str:
    """This stage's parameter name -> the PP=1 model's (decoder layers are numbered from 0 in every stage and
    model chunk; a chunk's names start with its index).

    Args:
        name: a parameter name of this rank's stage.
        spec: the pipeline spec.
    Returns:
        The same parameter's name in the PP=1 model.
    """
    from megatron.core import parallel_state as ps

    p = spec.parallel
    parts = name.split(".")
    chunk = 0
    if p.vpp > 1:
        chunk = int(parts.pop(0))
    if parts[:2] == ["decoder", "layers"]:
        per_chunk = spec.model.layers // (p.pp * p.vpp)
        parts[2] = str(int(parts[2]) + (chunk * p.pp + ps.get_pipeline_model_parallel_rank()) * per_chunk)
    return ".".join(parts)


if __name__ == "__main__":
    sys.exit(run_equivalence(CASES, PipelineParallelCheck()))
