"""TP/SP equivalence check: run under 2+ processes (torchrun); every rank builds the TP=1 model and the
TP=tp model from the same seed and compares outputs and gradients (TP shards against slices of the TP=1
gradient). Used by tests/test_model_tp.py; prints one JSON line per configuration on rank 0.

  python -m torch.distributed.run --nproc-per-node 2 -m soraplan.validation.tp_check
"""

from __future__ import annotations

import json
import sys
import warnings

TINY = dict(layers=2, hidden=64, heads=4, frames=16, res=64, text_tokens=8, text_dim=32, precision="fp32",
            dropout=0.0)
CASES = [
    {"sequence_parallel": True},
    {"sequence_parallel": False},
    {"adaln": "per-block", "sequence_parallel": True},
    {"adaln": "none", "sequence_parallel": True},
    {"attention": "window:2,2,2", "sequence_parallel": True},
    {"attention": "spatial-temporal", "attention_kernel": "unfused", "sequence_parallel": True},
    {"model": "DiT-S/8", "layers": 2, "hidden": 64, "heads": 4, "precision": "fp32", "sequence_parallel": True},
]


def _flags(case: dict, tp: int) -> dict:
    f = dict(case) if "model" in case else {**TINY, **case}
    if tp == 1:
        f.pop("sequence_parallel", None)
    return {**f, "tp": tp}


def _run(spec, seed: int = 7):
    import torch

    from soraplan.models.build import build_model
    from soraplan.models.loss import synthetic_batch, training_loss

    import zlib

    from megatron.core import parallel_state as ps

    model = build_model(spec, device="cpu", seed=seed)
    tp, rank = ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
    with torch.no_grad():   # zero-initialised params (adaLN-Zero, final layer) get random values, so
        for name, p in model.named_parameters():   # gradients reach every parameter; TP shards = slices
            if p.abs().max() == 0:
                shape = list(p.shape)
                split = getattr(p, "tensor_model_parallel", False)
                if split:
                    shape[p.partition_dim] *= tp
                full = torch.randn(shape, generator=torch.Generator().manual_seed(zlib.crc32(name.encode()))) * 0.05
                p.copy_(full.chunk(tp, dim=p.partition_dim)[rank] if split else full)
    g = torch.Generator().manual_seed(11)
    batch = synthetic_batch(spec, 2, "cpu", g)
    loss = training_loss(model, batch, generator=g)
    loss.backward()
    from soraplan.models.train_loop import finalize_grads

    finalize_grads(model, spec)
    return float(loss), {n: p for n, p in model.named_parameters()}


def main() -> int:
    warnings.filterwarnings("ignore")
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from soraplan.planner.config import build_spec

    from soraplan.models.parallel import initialize

    initialize(tp=1)
    tp = dist.get_world_size()
    ok = True
    for case in CASES:
        ref_spec = build_spec(flags=_flags(case, 1))
        initialize(ref_spec)
        ref_loss, ref = _run(ref_spec)
        spec = build_spec(flags=_flags(case, tp))
        initialize(spec)
        loss, got = _run(spec)
        rank = ps.get_tensor_model_parallel_rank()
        worst, zero_grads = 0.0, []
        for name, p in got.items():
            r = ref[name].grad
            if getattr(p, "tensor_model_parallel", False):
                r = r.chunk(tp, dim=p.partition_dim)[rank]
            if float(r.abs().max()) == 0.0:
                zero_grads.append(name)
            err = float((p.grad - r).abs().max() / (r.abs().max() + 1e-12))
            worst = max(worst, err)
        good = abs(loss - ref_loss) <= 1e-5 * abs(ref_loss) and worst < 1e-4 and not zero_grads
        ok &= good
        if dist.get_rank() == 0:
            print(json.dumps({"case": case, "tp": tp, "loss": loss, "ref_loss": ref_loss, "max_rel_grad_err": worst, "zero_grads": zero_grads,
                              "ok": good}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
