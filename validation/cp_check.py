"""CP equivalence check: under 2+ processes (torchrun), context parallel (cp = world; K/V all-gathered,
loss / cp per rank, gradients summed over CP) equals cp=1 in loss and every gradient. One JSON line per
case on rank 0.

  python -m torch.distributed.run --nproc-per-node 2 -m soraplan.validation.cp_check
"""

from __future__ import annotations

import json
import sys
import warnings

TINY = dict(layers=2, hidden=64, heads=4, frames=16, res=64, text_tokens=8, text_dim=32, precision="fp32")
CASES = [{}, {"adaln": "per-block"}, {"adaln": "none"}, {"model": "DiT-S/8", "layers": 2, "hidden": 64, "heads": 4,
                                                      "precision": "fp32"}]


def _run(spec):
    import torch
    import zlib

    from soraplan.models.build import build_model
    from soraplan.models.loss import synthetic_batch, training_loss
    from soraplan.models.train_loop import finalize_grads

    model = build_model(spec, device="cpu", seed=9)
    with torch.no_grad():
        for name, q in model.named_parameters():
            if q.abs().max() == 0:
                q.copy_(torch.randn(q.shape, generator=torch.Generator().manual_seed(zlib.crc32(name.encode()))) * 0.05)
    g = torch.Generator().manual_seed(21)
    batch = synthetic_batch(spec, 2, "cpu", g)
    model.eval()   # no label dropout: identical inputs on both sides
    loss = training_loss(model, batch, generator=g)
    (loss / spec.parallel.cp).backward()
    finalize_grads(model, spec)
    return float(loss), dict(model.named_parameters())


def main() -> int:
    warnings.filterwarnings("ignore")
    import torch.distributed as dist

    from soraplan.planner.config import build_spec

    from soraplan.models.parallel import initialize

    initialize(tp=1)
    cp = dist.get_world_size()
    ok = True
    for case in CASES:
        base = case if "model" in case else {**TINY, **case}
        ref_spec = build_spec(flags=base)
        initialize(ref_spec)
        ref_loss, ref = _run(ref_spec)
        spec = build_spec(flags={**base, "cp": cp})
        initialize(spec)
        loss, got = _run(spec)
        worst = max(float((q.grad - ref[n].grad).abs().max() / (ref[n].grad.abs().max() + 1e-12)) for n, q in got.items())
        good = abs(loss - ref_loss) <= 1e-5 * abs(ref_loss) and worst < 1e-4
        ok &= good
        if dist.get_rank() == 0:
            print(json.dumps({"case": case, "cp": cp, "loss": loss, "ref_loss": ref_loss, "max_rel_grad_err": worst,
                              "ok": good}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
