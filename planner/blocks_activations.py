"""Saved activations of the current video-DiT / LLM blocks (planner/blocks.py), op by op, as `Term`s.

Same structure and notation as planner/activations.py (a Term costs b * (s * per_token + per_sample) / div
bytes; s tokens per CP rank, which include the text tokens for `in-sequence` and `mmdit`), plus g key/value
heads, d head dim, kv = g*d, e adaLN width, V vocabulary. What each op keeps:

  RMSNorm            its input and rstd (fp32, one per token; LayerNorm: mean + rstd); an affine norm also
                     keeps its normalised output for the weight gradient
  q/k norm           per-head statistics (a + g per token) and, with weights, the normalised q and k
  RoPE               multiplications by the fixed cos / sin tables keep nothing; the rotated q and k are new
                     tensors kept by the attention (h + kv per token), so q and k are counted twice with RoPE
  gated FFN          fc1's output [gate; up] (2f) kept by the activation and the product, the activated gate
                     (f) kept by the product, the product (f) kept by fc2
  single-stream      linear1's input, its output [q k v mlp] (h + 2kv + f), the MLP activation input (f) and
                     linear2's input [attention out; activated MLP] (h + f)
  mmdit              every token passes its own stream's ops: the same per-token terms, two modulations
  causal             a causal flash kernel keeps the same tensors as a bidirectional one
  LM head            the final norm, the logits' input (h), the logits (V at the activation dtype) and the
                     fp32 softmax of the cross-entropy (V x 4 bytes) per token; the token ids (int64)

Mochi's narrower text stream is counted at the video width (an overestimate of (h - h_y) x T per layer).
"""

from __future__ import annotations

from .activations import FP32, Term
from .blocks import adaln_width, gated
from .spec import Spec


def layer_terms(spec: Spec, layer: int = 0) -> dict[str, Term]:
    """The saved tensors of block `layer` (main stack, then single-stream blocks).

    Args:
        spec: the spec.
        layer: block index (0-based).

    Returns:
        name -> Term.
    """
    m, k, v = spec.model, spec.kernels, spec.video
    h, f, a, g = m.hidden, m.ffn, m.heads, m.n_kv_heads
    kv = g * m.head_dim
    B = k.act_bytes
    cpu = k.cpu_semantics
    n_stats = 2 if m.norm == "layernorm" else 1
    stats = n_stats * (B if cpu else FP32)
    modulated = m.adaln != "none"
    flash = k.attention_kernel == "flash"
    terms: dict[str, Term] = {}

    def add(name: str, per_token: float = 0.0, per_sample: float = 0.0, div: str = "1") -> None:
        terms[name] = Term(per_token, per_sample, div)

    def norm(prefix: str) -> None:
        add(f"{prefix}.input", h * B, div="d")
        add(f"{prefix}.stats", stats, div="d")
        if m.affine_norms:
            add(f"{prefix}.normed", h * B, div="d")
        if modulated:
            add(f"{prefix}.x_norm", h * B, div="d")

    def qk_and_rope(prefix: str, q_per_token: bool = True) -> None:
        if m.qk_norm != "none":
            qk_stats = (2 if m.qk_norm == "layernorm" else 1) * (B if cpu else FP32)
            heads = (a + g) if m.qk_norm_width == "head" else 2
            add(f"{prefix}.qk_norm_stats", heads * qk_stats, div="t")
            add(f"{prefix}.qk_normed", (h + kv) * B, div="t")
        if m.pos in ("rope3d", "rope3d-learned") and q_per_token:
            add(f"{prefix}.rope_qk", (h + kv) * B, div="t")

    def core(prefix: str) -> None:
        if flash:
            add(f"{prefix}.core_lse", a * FP32, div="t")
        else:
            K = spec.seq_len
            add(f"{prefix}.softmax_out", a * K * max(B, FP32), div="t")
            if B != FP32:
                add(f"{prefix}.attn_probs", a * K * B, div="t")
        add(f"{prefix}.proj_input", h * B, div="t")

    streams = 2 if m.text_mode == "mmdit" and layer < m.layers else 1
    if modulated:
        mod = {"per-block": 6, "single": 6, "expert": 12}[m.adaln] if layer < m.layers else 3
        e = adaln_width(m)
        if m.adaln in ("per-block", "expert") or layer >= m.layers:
            add("adaln.linear_input", per_sample=streams * e * B)
        add("adaln.mod", per_sample=streams * mod * h * B)
        add("modulate.one_plus_scale", per_sample=streams * (1 if layer >= m.layers else 2) * h * B)
    if layer >= m.layers:                                   # single-stream block
        norm("norm")
        add("linear1.input", h * B, div="d")
        add("linear1.out", (h + 2 * kv + (2 if gated(m) else 1) * f) * B, div="t")
        qk_and_rope("attn")
        core("attn")
        add("mlp.act_input", (2 if gated(m) else 1) * f * B, div="t")
        add("linear2.input", (h + f) * B, div="t")
        if modulated:
            add("gate.out", h * B, div="d")
        return terms
    norm("norm1")
    add("self_attn.qkv_input", h * B, div="d")
    add("self_attn.qkv", (h + 2 * kv) * B, div="t")
    qk_and_rope("self_attn")
    core("self_attn")
    if modulated:
        add("gate1.attn_out", h * B, div="d")
    if m.cross_attn:
        T = v.text_tokens
        if m.cross_attn_norm or not modulated:
            norm("norm_cross")
        add("cross_attn.q_input", h * B, div="d")
        add("cross_attn.q", h * B, div="t")
        add("cross_attn.kv", per_sample=2 * T * kv * B, div="t")
        if m.qk_norm != "none":
            add("cross_attn.qk_normed", h * B, per_sample=T * kv * B, div="t")
        if flash:
            add("cross_attn.core_lse", a * FP32, div="t")
            add("cross_attn.core_mask", per_sample=T * B)
        else:
            add("cross_attn.softmax_out", a * T * max(B, FP32), div="t")
        add("cross_attn.proj_input", h * B, div="t")
    norm("norm2")
    add("mlp.fc1_input", h * B, div="d")
    if gated(m):
        add("mlp.fc1_out", 2 * f * B, div="t")
        add("mlp.act_out", f * B, div="t")
    else:
        add("mlp.gelu_input", f * B, div="t")
    add("mlp.fc2_input", f * B, div="t")
    if modulated:
        add("gate2.mlp_out", h * B, div="d")
    return terms


def outside_terms(spec: Spec) -> dict[str, Term]:
    """Saved tensors outside the blocks for the new vocabulary (video: the DiT terms plus the joint text
    projection; language models: token ids, final norm, logits and the loss's softmax)."""
    m, k, v = spec.model, spec.kernels, spec.video
    h, B = m.hidden, k.act_bytes
    n_stats = 2 if m.norm == "layernorm" else 1
    stats = n_stats * (B if k.cpu_semantics else FP32)
    if m.vocab_size:
        return {"embed.token_ids": Term(8.0, 0.0, "1"),
                "final.norm_input": Term(h * B + stats, 0.0, "1"),
                "final.linear_input": Term(h * B, 0.0, "1"),
                "loss.logits": Term(m.vocab_size * B, 0.0, "1"),
                "loss.softmax": Term(m.vocab_size * FP32, 0.0, "1")}
    out: dict[str, Term] = {}
    e = adaln_width(m)
    out["embed.t_embedder"] = Term(0.0, (m.timestep_freq_dim + 2 * e) * B, "1")
    if m.text_mode != "none":
        w = m.text_hidden or h
        width = {"mlp": v.text_dim + 2 * w, "linear": v.text_dim}.get(m.text_proj, v.text_dim + 16 * h)
        out["embed.text_proj"] = Term(0.0, v.text_tokens * width * B, "1")
    pv_c = v.patch_volume * v.latent_channels
    out["embed.patch_input"] = Term(pv_c * B, 0.0, "1")
    out["final.norm_input"] = Term(h * B + stats, 0.0, "1")
    if m.adaln != "none":
        out["final.x_norm"] = Term(h * B, h * B, "1")
    out["final.linear_input"] = Term(h * B, 0.0, "1")
    out["loss.diff"] = Term(pv_c * FP32, 0.0, "1")
    return out
