"""FLOPs per sample: forward, training (model) FLOPs and hardware FLOPs with recompute.

Conventions (the same as torch's FlopCounterMode and the DiT paper, whose table is in MACs):
  * 1 MAC = 2 FLOPs; a matmul [m,k]x[k,n] is m*k*n MACs; biases, norms and activations are not counted
    (they are reported by `soraplan validate` as the elementwise remainder).
  * Bidirectional attention is not halved (no causal mask): QK^T and AV are each S*K*h MACs, where K is the
    number of keys a query sees (S for full attention, the window volume for window attention, H*W or T
    of the token grid for spatial or temporal layers).
  * adaLN and the timestep / text embedders run once per sample (text per text token), not per video token.
  * training = 3 x forward (backward = 2 x forward, for matmuls and for attention cores alike);
    hardware = training + the recomputed forward (full: whole layers; selective: the attention core).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .spec import Spec


def attention_keys(spec: Spec, layer: int) -> int:
    """Keys each query attends to in layer `layer` (0-based)."""
    m, v = spec.model, spec.video
    kind = m.attention_kind
    if kind == "full":
        return spec.seq_len
    t, hh, ww = v.grid
    if kind == "window":
        assert m.window is not None
        return math.prod(m.window)
    # spatial-temporal: even layers attend within a frame (H*W), odd layers across time (T)
    return hh * ww if layer % 2 == 0 else t


@dataclass(frozen=True)
class LayerMACs:
    """MACs of one layer for one sample."""

    self_linear: int     # qkv + proj
    self_core: int       # QK^T + AV
    cross_linear: int    # q + proj (per video token) + kv (per text token)
    cross_core: int
    mlp: int
    adaln: int           # per-block modulation Linear (once per sample)

    @property
    def linear(self) -> int:
        return self.self_linear + self.cross_linear + self.mlp + self.adaln

    @property
    def total(self) -> int:
        return self.linear + self.self_core + self.cross_core


def layer_macs(spec: Spec, layer: int) -> LayerMACs:
    m, v = spec.model, spec.video
    if m.extended:  # current video DiTs and LLMs (planner/blocks_flops.py)
        from .blocks_flops import layer_macs as extended_layer_macs

        return LayerMACs(*extended_layer_macs(spec, layer, attention_keys(spec, layer)))
    s, h, f = spec.seq_len, m.hidden, m.ffn
    tt = v.text_tokens
    self_linear = s * 3 * h * h + s * h * h                    # qkv: s*h*3h, proj: s*h*h
    self_core = 2 * s * attention_keys(spec, layer) * h        # QK^T: s*K*h, AV: s*K*h (summed over heads)
    if m.cross_attn:
        cross_linear = s * h * h + tt * 2 * h * h + s * h * h  # q: s*h*h, kv: T*h*2h, proj: s*h*h
        cross_core = 2 * s * tt * h                             # QK^T: s*T*h, AV: s*T*h
    else:
        cross_linear = cross_core = 0
    mlp = 2 * s * h * f                                         # fc1: s*h*f, fc2: s*f*h
    adaln = 6 * h * h if m.adaln == "per-block" else 0          # Linear(h, 6h) on the conditioning vector
    return LayerMACs(self_linear, self_core, cross_linear, cross_core, mlp, adaln)


def embed_macs(spec: Spec) -> dict[str, int]:
    """MACs outside the transformer layers, once per sample."""
    m, v = spec.model, spec.video
    if m.extended:
        from .blocks_flops import embed_macs as extended_embed_macs

        return extended_embed_macs(spec)
    s_video, h = v.seq_len, m.hidden
    c_out = v.latent_channels * (2 if m.learn_sigma else 1)
    out = {"patch_embed": s_video * v.latent_channels * v.patch_volume * h}   # conv as a matmul per patch
    if m.time_mlp:  # U-ViT has no timestep MLP
        out["t_embedder"] = m.timestep_freq_dim * h + h * h
    if m.adaln == "single":
        out["t_block"] = 6 * h * h
    if m.cross_attn:
        out["text_proj"] = v.text_tokens * (v.text_dim * h + h * h)
    if m.long_skip:
        out["skip"] = (m.layers - 1) // 2 * spec.seq_len * 2 * h * h
    # the output projection runs on every token in the sequence (U-ViT decodes its time/class tokens too, then drops them)
    out["final_layer"] = (2 * h * h if m.adaln == "per-block" else 0) + spec.seq_len * h * v.patch_volume * c_out
    return out


@dataclass(frozen=True)
class Flops:
    forward: int                 # FLOPs per sample
    train: int                   # 3 x forward (model FLOPs)
    hardware: int                # train + recomputed forward
    by_part: dict[str, int]      # forward FLOPs: linear, self_attn_core, cross_attn_core, embed
    recompute: int               # forward FLOPs recomputed per sample


def flops(spec: Spec) -> Flops:
    L = spec.model.depth
    layers = [layer_macs(spec, i) for i in range(L)]
    emb = embed_macs(spec)
    linear = sum(x.linear for x in layers)
    self_core = sum(x.self_core for x in layers)
    cross_core = sum(x.cross_core for x in layers)
    embed = sum(emb.values())
    fwd = 2 * (linear + self_core + cross_core + embed)
    p = spec.parallel
    if p.recompute == "full":
        n = p.recompute_layers if p.recompute_layers is not None else L // p.pp
        frac = n / (L // p.pp)
        recompute = int(2 * frac * sum(x.total for x in layers))
    elif p.recompute == "selective":
        recompute = 2 * (self_core + cross_core)
    else:
        recompute = 0
    return Flops(
        forward=fwd, train=3 * fwd, hardware=3 * fwd + recompute, recompute=recompute,
        by_part={"linear": 2 * linear, "self_attn_core": 2 * self_core, "cross_attn_core": 2 * cross_core, "embed": 2 * embed},
    )


def data_input_macs(spec: Spec) -> dict[str, int]:
    """MACs per sample of the matmuls whose input is data, not an activation: the patch embedding (noised
    latents), the timestep embedder's first Linear (sinusoidal frequencies) and the text projection's first
    Linear (text-encoder states). Their backward computes the weight gradient only (no input gradient)."""
    m, v = spec.model, spec.video
    h = m.hidden
    if m.extended:
        from .blocks_flops import data_input_macs as extended_data_input_macs

        return extended_data_input_macs(spec)
    out = {"patch_embed": v.seq_len * v.latent_channels * v.patch_volume * h,
           "t_embedder.fc1": m.timestep_freq_dim * h}
    if m.cross_attn:
        out["text_proj.fc1"] = v.text_tokens * v.text_dim * h
    return out


def flash_backward_recompute(spec: Spec) -> int:
    """FLOPs per sample that a fused (flash) attention backward adds by recomputing QK^T from q, k and the
    logsumexp: one of the core's two forward matmuls, i.e. half its forward FLOPs (torch's FlopCounterMode
    counts flash backward as 2.5 x forward). Not on the math path (CPU SDPA with dropout) or unfused."""
    k = spec.kernels
    if k.attention_kernel != "flash" or (k.dropout > 0 and k.cpu_semantics):
        return 0
    f = flops(spec)
    if spec.model.extended:   # plus the cores of the text refiner / attention pool (planner/blocks_flops.py)
        from .blocks_flops import embed_core_macs

        return (f.by_part["self_attn_core"] + f.by_part["cross_attn_core"] + 2 * embed_core_macs(spec)) // 2
    return (f.by_part["self_attn_core"] + f.by_part["cross_attn_core"]) // 2


def executed_backward(spec: Spec) -> int:
    """Backward FLOPs per sample as torch executes them: 2 x forward (input and weight gradients), less the
    input gradients nobody needs (`data_input_macs`), plus flash's QK^T recompute and the recomputed forward.
    `Flops.train` keeps the 3 x forward convention of model FLOPs (MFU); this is what a FLOP counter sees."""
    f = flops(spec)
    return 2 * f.forward - 2 * sum(data_input_macs(spec).values()) + flash_backward_recompute(spec) + f.recompute
