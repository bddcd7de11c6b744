"""The tiny model: a real layout at seconds-per-step size on a CPU.

One set of sizes, used by `soraplan train --tiny`, `make_shards --tiny`, the TP/PP/CP equivalence checks,
the validation matrix and the model tests: 2 layers of 4 heads x 16 channels (hidden 64), 16 frames at
64x64 (a 2x4x4 latent grid of 32 tokens with the default VAE and patch sizes), 8 text tokens of 32, fp32.

  TINY_FLAGS        these sizes as spec flags (build_spec(flags={**TINY_FLAGS, ...})); the rest of the spec
                    (ffn width, latent channels, ...) stays the preset's.
  shrink_spec(spec) any spec at these sizes, keeping its layout (tp, pp, cp, dp, attention, adaLN,
                    conditioning); also scales the ffn and latent channels down (what `train --tiny` runs).
"""

from __future__ import annotations

from typing import Any

TINY_FLAGS: dict[str, Any] = dict(layers=2, hidden=64, heads=4, frames=16, res=64, text_tokens=8, text_dim=32,
                                  precision="fp32")

HEAD_DIM = TINY_FLAGS["hidden"] // TINY_FLAGS["heads"]      # 16 channels per head
FFN_RATIO = 4                                               # ffn hidden = 4 x hidden, as in DiT
MAX_LATENT_CHANNELS = 4
MAX_CLASSES = 10


def tiny_flags(**overrides: Any) -> dict[str, Any]:
    """TINY_FLAGS with `overrides` applied (a new dict).

    Args:
        overrides: spec flags that replace or extend the tiny sizes (e.g. adaln="none", tp=2).
    Returns:
        The flag dict for `soraplan.planner.config.build_spec(flags=...)`.
    """
    return {**TINY_FLAGS, **overrides}


def shrink_spec(spec):
    """The same layout (tp, pp, cp, dp, attention kind, adaLN, conditioning) at the tiny sizes.

    Layers: max(2, pp * vpp) so every pipeline stage holds one; heads: 4, or tp heads when tp > 4 (16
    channels each); 16 frames at 64x64 (1 frame for an image model; larger squares when 32 tokens do not split
    over tp x cp, e.g. 96x96 at tp=3); 8 text tokens when the model
    cross-attends; windows clipped to the tiny latent grid; fp32 parameters and activations without CUDA.

    Args:
        spec: a validated soraplan.planner.spec.Spec.
    Returns:
        A new Spec named "<name>-tiny".
    """
    import torch

    from soraplan.planner.spec import Spec

    d = spec.model_dump()
    p, m, v, k = d["parallel"], d["model"], d["video"], d["kernels"]
    base_heads = TINY_FLAGS["heads"]
    heads = p["tp"] * max(1, base_heads // p["tp"])          # 4 heads up to tp=4, tp heads beyond
    m.update(layers=max(TINY_FLAGS["layers"], p["pp"] * p["vpp"]), heads=heads, hidden=HEAD_DIM * heads,
             ffn_hidden=FFN_RATIO * HEAD_DIM * heads, name=f"{m['name']}-tiny",
             num_classes=min(m["num_classes"], MAX_CLASSES), long_skip=False, tokens_in_sequence=0)
    image = v["frames"] == 1
    # the latent grid after patching is (t, g, g), g = res / 16: g = 4 (64x64), or the smallest g above it whose
    # tokens split evenly over tp x cp (sequence parallelism and context parallelism shard the sequence)
    t = 1 if image else 2
    g = next(g for g in range(4, 4 * p["tp"] * p["cp"] + 5) if (t * g * g) % (p["tp"] * p["cp"]) == 0)
    res = 16 * g
    v.update(frames=1 if image else TINY_FLAGS["frames"], height=res, width=res,
             vae_stride_t=1 if image else 4, vae_stride_s=8, causal_first_frame=False, patch_t=1 if image else 2,
             patch_h=2, patch_w=2, tokens=None, text_tokens=TINY_FLAGS["text_tokens"] if m["cross_attn"] else 0,
             text_dim=TINY_FLAGS["text_dim"])
    v["latent_channels"] = min(v["latent_channels"], MAX_LATENT_CHANNELS)
    if spec.model.extended:
        _shrink_current(m, v, p)
    if m["attention"].startswith("window"):
        grid = (t, g, g)                                     # the tiny latent grid (t, h, w) after patching
        m["attention"] = "window:" + ",".join(str(min(int(w), g)) for w, g in zip(m["attention"][7:].split(","), grid))
    if m["attention"] == "spatial-temporal" and image:
        m["attention"] = "full"
    if not torch.cuda.is_available():
        k.update(param_dtype="fp32", activation_dtype="fp32")
    d["name"] = f"{d['name']}-tiny"
    return Spec.model_validate(d)


def _shrink_current(m: dict, v: dict, p: dict) -> None:
    """The current block vocabulary at tiny sizes (in place): text in the sequence / MMDiT keep 8 text
    tokens, GQA keeps 2 query heads per key/value head (or one per TP rank), Mochi's text stream is half
    the width, widths derived from the hidden size follow it, a language model keeps 32 tokens."""
    h = m["hidden"]
    if m.get("text") in ("in-sequence", "mmdit"):
        v["text_tokens"] = TINY_FLAGS["text_tokens"]
    if m.get("kv_heads"):
        m["kv_heads"] = max(p["tp"], m["heads"] // 2)
    if m.get("text_hidden"):
        m.update(text_hidden=h // 2, text_ffn_hidden=FFN_RATIO * h // 2)
    if m.get("adaln_dim"):
        m["adaln_dim"] = h // 2
    if m["timestep_freq_dim"] > 256:
        m["timestep_freq_dim"] = h                          # CogVideoX: the sinusoid has the model's width
    if m.get("pooled_text_dim"):
        m["pooled_text_dim"] = v["text_dim"] if m.get("pooled_text") == "attn-pool" else 16
    if m.get("cond_in_channels"):
        m["cond_in_channels"] = min(m["cond_in_channels"], 8)
    if m.get("single_layers"):
        m["single_layers"] = m["layers"]
    v.pop("vae_chunk", None)
    if m.get("vocab_size"):
        m["vocab_size"] = 97
        v.update(tokens=32, text_tokens=0)
