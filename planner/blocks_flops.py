"""Forward MACs per sample of the current video-DiT / LLM blocks (planner/blocks.py names the groups).

Same conventions as planner/flops.py (1 MAC = 2 FLOPs, matmuls only; norms, RoPE rotations and activations
are elementwise work). s tokens in the attention (video + text for `in-sequence` and `mmdit`), s_v video
tokens, T text tokens, g key/value heads, d head dim, e adaLN width, K keys per query:

  attention   qkv s*h*(h + 2gd), proj s*h*h; core 2*s*K*h (GQA shares K/V, the query heads set the cost);
              causal (flash skips the masked half): h*s*s instead of 2*s*s*h
  cross-attn  q s*h*h, kv T*h*2gd, proj s*h*h; core 2*s*T*h
  ffn         gelu 2*s*h*f; gated (swiglu / geglu) 3*s*h*f
  mmdit       both streams' projections over their own tokens (same widths: the formulas above over s);
              asymmetric (Mochi): video s_v*(4h^2 + 3hf), text T*(3*h_y*h + h*h_y + 3*h_y*f_y), the last block
              without the text projection and MLP
  single      s*h*(h + 2gd + f [2f gated]) + s*(h + f)*h
  adaLN       per-block e*6h (mmdit: per stream; single: e*3h; Mochi: h*4h + h*4h_y); expert 2*e*6h
"""

from __future__ import annotations

from .blocks import adaln_width, asymmetric, gated
from .spec import Spec

Macs = tuple[int, int, int, int, int, int]   # the fields of planner.flops.LayerMACs, in order


def _core(spec: Spec, keys: int) -> int:
    m = spec.model
    s, h = spec.seq_len, m.hidden
    if m.causal and m.attention_kind == "full":
        return h * s * s                          # QK^T and AV over half the pairs (flash skips the masked half)
    return 2 * s * keys * h


def layer_macs(spec: Spec, layer: int, keys: int) -> Macs:
    """MACs of block `layer` (0-based over the main stack, then the single-stream blocks) for one sample.

    Args:
        spec: the spec (any block type).
        layer: block index.
        keys: keys per query in this block (planner.flops.attention_keys).

    Returns:
        (self_linear, self_core, cross_linear, cross_core, mlp, adaln), the fields of planner.flops.LayerMACs
        (single-stream blocks: their fused projections split into attention and MLP parts).
    """
    m, v = spec.model, spec.video
    s, h, f, T = spec.seq_len, m.hidden, m.ffn, v.text_tokens
    kv = 2 * m.n_kv_heads * m.head_dim
    e = adaln_width(m)
    nf = 3 if gated(m) else 2
    core = _core(spec, keys)
    if layer >= m.layers:                                     # single-stream block
        attn = s * h * (h + kv) + s * h * h
        mlp = s * h * f * (nf - 1) + s * f * h
        return (attn, core, 0, 0, mlp, e * 3 * h if m.adaln != "none" else 0)
    if m.text_mode == "mmdit" and asymmetric(spec):
        hy, fy = m.text_hidden or h, m.text_ffn_hidden or f
        sv = s - T
        last = layer == m.layers - 1
        attn = sv * (3 * h * h + h * h) + T * hy * 3 * h + (0 if last else T * h * hy)
        mlp = sv * nf * h * f + (0 if last else T * nf * hy * fy)
        return (attn, core, 0, 0, mlp, h * 4 * h + h * (hy if last else 4 * hy))
    attn = s * h * (h + kv) + s * h * h
    mlp = s * nf * h * f
    if m.cross_attn:
        cross_linear, cross_core = s * h * h + T * h * kv + s * h * h, 2 * s * T * h
    else:
        cross_linear = cross_core = 0
    adaln = {"per-block": e * 6 * h, "expert": 2 * e * 6 * h}.get(m.adaln, 0)
    if m.text_mode == "mmdit":
        adaln *= 2                                            # one modulation per stream
    return (attn, core, cross_linear, cross_core, mlp, adaln)


def text_proj_macs(spec: Spec) -> int:
    """MACs of the text projection for one sample (per text token, plus the refiner's attention)."""
    m, v = spec.model, spec.video
    h, D, T = m.hidden, v.text_dim, v.text_tokens
    w = m.text_hidden or h
    if m.text_proj == "mlp":
        return T * (D * w + w * w)
    if m.text_proj == "linear":
        return T * D * w
    block = T * (3 * h * h + h * h + 8 * h * h) + 2 * T * T * h + 2 * h * h
    return T * D * h + (m.timestep_freq_dim * h + h * h) + (D * h + h * h) + m.text_refiner_layers * block


def embed_macs(spec: Spec) -> dict[str, int]:
    """MACs outside the blocks, once per sample (the LM's output logits per token).

    Args:
        spec: the spec.

    Returns:
        name -> MACs.
    """
    m, v = spec.model, spec.video
    h = m.hidden
    e = adaln_width(m)
    if m.vocab_size:
        return {"output_head": spec.seq_len * h * m.vocab_size}      # the token embedding is a lookup
    sv = v.seq_len + m.tokens_in_sequence
    c_out = v.latent_channels * (2 if m.learn_sigma else 1)
    out = {"patch_embed": v.seq_len * v.latent_channels * v.patch_volume * h}
    if m.cond_in_channels:
        out["cond_embed"] = v.seq_len * m.cond_in_channels * h
    if m.time_mlp:
        out["t_embedder"] = m.timestep_freq_dim * e + e * e
    if m.guidance_embed:
        out["guidance_embedder"] = m.timestep_freq_dim * e + e * e
    if m.pooled_text_dim:
        P, T = m.pooled_text_dim, v.text_tokens
        out["pooled_text_proj"] = {"mlp": P * h + h * h, "linear": P * h}.get(
            m.pooled_text, T * P * 2 * P + P * P + 2 * T * P + P * h)
    if m.adaln == "single":
        out["t_block"] = 6 * h * h
    if m.text_mode != "none":
        out["text_proj"] = text_proj_macs(spec)
    mod = {"per-block": e * 2 * h, "expert": e * 2 * h}.get(m.adaln, 0)
    out["final_layer"] = mod + sv * h * v.patch_volume * c_out
    return out


def data_input_macs(spec: Spec) -> dict[str, int]:
    """MACs of the matmuls whose input is data (no input gradient in backward)."""
    m, v = spec.model, spec.video
    h = m.hidden
    if m.vocab_size:
        return {}
    out = {"patch_embed": v.seq_len * v.latent_channels * v.patch_volume * h}
    if m.time_mlp:
        out["t_embedder.fc1"] = m.timestep_freq_dim * adaln_width(m)
    if m.text_mode != "none":
        w = h if m.text_proj == "refiner" else (m.text_hidden or h)
        out["text_proj.fc1"] = v.text_tokens * v.text_dim * w
        if m.text_proj == "refiner":          # its timestep MLP and the context MLP read data too
            out["text_proj.t_embedder.fc1"] = m.timestep_freq_dim * h
            out["text_proj.c_embedder.fc1"] = v.text_dim * h
    if m.guidance_embed:
        out["guidance_embedder.fc1"] = m.timestep_freq_dim * adaln_width(m)
    if m.cond_in_channels:
        out["cond_embed"] = v.seq_len * m.cond_in_channels * h
    if m.pooled_text_dim:
        P = m.pooled_text_dim
        out["pooled_text_proj.fc1"] = P * h if m.pooled_text != "attn-pool" else v.text_tokens * P * 2 * P + P * P
    return out


def embed_core_macs(spec: Spec) -> int:
    """Attention-core MACs outside the blocks, per sample: the token refiner's self-attention and the
    attention pool (flash recomputes half of them in backward, like the blocks' cores)."""
    m, v = spec.model, spec.video
    T = v.text_tokens
    out = 0
    if m.text_mode != "none" and m.text_proj == "refiner":
        out += m.text_refiner_layers * 2 * T * T * m.hidden
    if m.pooled_text_dim and m.pooled_text == "attn-pool":
        out += 2 * T * m.pooled_text_dim
    return out
