"""PP equivalence check: under 2+ processes (torchrun), the pipeline (pp = world) trained through
megatron's 1F1B schedule equals the pp=1 model on the same micro-batches (loss and every gradient;
stage parameters are copied from a pp=1 model built on every rank). Prints one JSON line on rank 0.

  python -m torch.distributed.run --nproc-per-node 2 -m soraplan.validation.pp_check
"""

from __future__ import annotations

import json
import sys
import warnings

TINY = dict(layers=4, hidden=64, heads=4, frames=16, res=64, text_tokens=8, text_dim=32, precision="fp32")
CASES = [{}, {"adaln": "per-block"}, {"adaln": "none"}, {"attention": "spatial-temporal"}]


def _items(spec, n: int):
    import torch

    from soraplan.models.loss import diffusion_inputs, model_kwargs, synthetic_batch

    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(100 + i)
        batch = synthetic_batch(spec, spec.parallel.micro_batch, "cpu", g)
        x_t, ts, target = diffusion_inputs(batch, "flow", g)
        out.append(({"latents": x_t, "timesteps": ts, **model_kwargs(batch)}, target))
    return out


def main() -> int:
    warnings.filterwarnings("ignore")
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from soraplan.planner.config import build_spec

    from soraplan.models.build import build_model
    from soraplan.models.loss import mse
    from soraplan.models.parallel import initialize
    from soraplan.models.pipeline import pipeline_step
    from soraplan.models.train_loop import finalize_grads

    initialize(tp=1)
    pp = dist.get_world_size()
    ok = True
    for case in CASES:
        ref_spec = build_spec(flags={**TINY, **case, "global_batch": 4})
        initialize(ref_spec)
        ref = build_model(ref_spec, device="cpu", seed=5)
        with torch.no_grad():
            for n, q in ref.named_parameters():
                if q.abs().max() == 0:
                    q.copy_(torch.randn(q.shape, generator=torch.Generator().manual_seed(len(n))) * 0.05)
        items = _items(ref_spec, 4)
        ref_loss = sum(float(mse(ref(**x), t)) for x, t in items) / len(items)
        for x, t in items:
            (mse(ref(**x), t) / len(items)).backward()
        spec = build_spec(flags={**TINY, **case, "pp": pp, "global_batch": 4})
        initialize(spec)
        model = build_model(spec, device="cpu", seed=5)
        per_stage = spec.model.layers // pp
        offset = ps.get_pipeline_model_parallel_rank() * per_stage
        refp = dict(ref.named_parameters())

        def ref_name(n: str) -> str:
            parts = n.split(".")
            if parts[:2] == ["decoder", "layers"]:
                parts[2] = str(int(parts[2]) + offset)
            return ".".join(parts)

        with torch.no_grad():
            for n, q in model.named_parameters():
                q.copy_(refp[ref_name(n)])
        loss = float(pipeline_step(model, spec, items))
        finalize_grads(model, spec)
        worst = 0.0
        for n, q in model.named_parameters():
            r = refp[ref_name(n)].grad
            worst = max(worst, float((q.grad - r).abs().max() / (r.abs().max() + 1e-12)))
        good = abs(loss - ref_loss) <= 1e-5 * abs(ref_loss) and worst < 1e-4
        ok &= good
        if dist.get_rank() == 0:
            print(json.dumps({"case": case, "pp": pp, "loss": loss, "ref_loss": ref_loss, "max_rel_grad_err": worst,
                              "ok": good}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
