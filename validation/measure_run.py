"""Run the measurements of `soraplan.validation.measure` on the real VideoDiT built from a Spec.

`measure_spec(spec, device)` builds the model (`build_model`), draws a synthetic micro-batch of
spec.parallel.micro_batch samples and runs ONE training forward (FLOPs counted, saved tensors recorded)
and its backward (FLOPs counted), then fvcore's forward trace. It returns plain numbers (a JSON-able dict);
`measure_compare` sets them against the planner. On "meta" nothing is computed: shapes only (the 6B at
30,720 tokens in seconds); SDPA is routed to its flash op there (`flash_on_meta`).
"""

from __future__ import annotations

import re
from typing import Any

CORE_RE = re.compile(r"^decoder\.layers\.\d+\.(self|cross)_attention\.core_attention$")
# the current block vocabulary (models/blocks.py): blocks.N / single_blocks.N, joint attention at block level
CORE_RE_BLOCKS = re.compile(r"^(?:single_)?blocks\.\d+\.(?:(self|cross)_attn\.)?core_attention$")


def block_roots(model) -> tuple[str, ...]:
    """Module prefixes of the transformer blocks: `decoder` (VideoDiT) or `blocks` (+ `single_blocks`)."""
    if hasattr(model, "decoder"):
        return ("decoder",)
    return ("blocks", "single_blocks") if hasattr(model, "single_blocks") else ("blocks",)


def layer_prefixes(model) -> list[str]:
    """Module prefix of every block, in order."""
    if hasattr(model, "decoder"):
        return [f"decoder.layers.{i}" for i in range(len(model.decoder.layers))]
    return [f"{root}.{i}" for root in block_roots(model) for i in range(len(getattr(model, root)))]


def _core_flops(by_module: dict[str, int]) -> dict[str, int]:
    out = {"self": 0, "cross": 0}
    for name, n in by_module.items():
        m = CORE_RE.match(name)
        if m:
            out[m.group(1)] += n
        m = CORE_RE_BLOCKS.match(name)
        if m:
            out[m.group(1) or "self"] += n
    return out


def measure_spec(spec, device: str = "cpu", fvcore: bool = True, seed: int = 0) -> dict[str, Any]:
    """Parameters, forward/backward FLOPs, fvcore forward FLOPs and saved bytes of one micro-batch."""
    import contextlib

    import torch

    from soraplan.models.build import build_model
    from soraplan.models.loss import synthetic_batch, training_loss
    from .measure import count_flops, flash_on_meta, params_by_group, record_saved

    model = build_model(spec, device=device, seed=None if device == "meta" else seed)
    model.train()
    b = spec.parallel.micro_batch
    g = torch.Generator().manual_seed(seed)
    batch = synthetic_batch(spec, b, device, g)
    root = type(model).__name__
    meta = contextlib.nullcontext() if device != "meta" else flash_on_meta()

    with meta:
        with count_flops(root) as fwd, record_saved(model) as saved:
            loss = training_loss(model, batch, generator=g)
        with count_flops(root) as bwd:
            loss.backward()
    f, bk = fwd["flops"], bwd["flops"]
    roots, layers = block_roots(model), layer_prefixes(model)
    out: dict[str, Any] = {
        "device": device,
        "micro_batch": b,
        "params": params_by_group(model),
        "flops": {
            "forward": f.total,
            "forward_core": _core_flops(f.by_module),
            "forward_blocks": sum(f.under(r) for r in roots),
            "backward": bk.total,
            "forward_by_op": f.by_op,
            "backward_by_op": bk.by_op,
            "elementwise_forward": fwd["elementwise"],
            "elementwise_backward": bwd["elementwise"],
        },
        "saved": {
            "blocks": sum(saved.under(r) for r in roots),
            "layers": [saved.under(x) for x in layers],
            "outside": saved.total - sum(saved.under(r) for r in roots),
            "total": saved.total,
            "listing_layer1": saved.listing(layers[1]) if len(layers) > 1 else [],
        },
    }
    del loss
    if fvcore and "latents" in batch:      # (a language model's forward takes token ids: no fvcore trace)
        out["fvcore"] = _fvcore(model, batch, meta_ctx=device == "meta")
    return out


def _fvcore(model, batch: dict, meta_ctx: bool) -> dict[str, Any]:
    """fvcore's forward FLOPs (tensor inputs only: None arguments are closed over by a thin wrapper)."""
    import contextlib

    import torch

    from .fvcore_handlers import fvcore_forward_flops
    from .measure import flash_on_meta

    names = [k for k in ("text_states", "text_mask", "class_labels") if batch.get(k) is not None]

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, latents, timesteps, *extra):
            return self.model(latents, timesteps, **dict(zip(names, extra)))

    b = batch["latents"].shape[0]
    timesteps = torch.full((b,), 500.0, device=batch["latents"].device)
    inputs = (batch["latents"], timesteps, *[batch[k] for k in names])
    # eval(): the same forward matmuls, but no recompute checkpoints (an autograd Function running modules
    # inside is one opaque PythonOp to the tracer) and no dropout.
    was_training = model.training
    model.eval()
    try:
        with (flash_on_meta() if meta_ctx else contextlib.nullcontext()), torch.no_grad():
            res = fvcore_forward_flops(Wrapper(), inputs)
    finally:
        model.train(was_training)
    res["by_module"] = {k[len("model."):]: v for k, v in res["by_module"].items()
                        if k.startswith("model.") and k.count(".") == 1}
    return res
