"""Saved activations of the current video-DiT / LLM blocks (planner/blocks.py), op by op, as `Term`s.

Same structure and notation as planner/activations.py (a Term costs b * (s * per_token + per_sample) / div
bytes; s tokens per CP rank, which include the text tokens for `in-sequence` and `mmdit`), plus g key/value
heads, d head dim, kv = g*d, e adaLN width, V vocabulary. What each op keeps:

  RMSNorm            its input and rstd (fp32, one per token; below fp32 also the rstd at the activation
                     dtype and an fp32 copy of the input); with a weight also its normalised tensor
  LayerNorm          its input, mean and rstd (the affine transform is fused)
  q/k norm           per-head statistics (a + g per token) and, with weights, the normalised q and k
  RoPE               multiplications by the fixed cos / sin tables keep nothing; the rotated q and k are new
                     tensors kept by the attention (h + kv per token), so q and k are counted twice with RoPE
  gated FFN          fc1's output [gate; up] (2f) kept by the activation and the product, the activated gate
                     (f) kept by the product, the product (f) kept by fc2
  single-stream      linear1's input, its output [q k v mlp] (h + 2kv + f; the MLP activation keeps a view of
                     it), the attention output and linear2's input [attention out; activated MLP] (h + f)
  mmdit              every token passes its own stream's ops: the same per-token terms, two modulations; the
                     joint attention keeps the concatenated q, k, v (copies), not the streams' own
  causal             a causal flash kernel keeps the same tensors as a bidirectional one
  LM head            the final norm, the logits' input (h) and the fp32 log-softmax of the cross-entropy
                     (V x 4 bytes) per token; the token ids and the targets (int64)

Mochi's narrower text stream is counted at the video width (an overestimate of (h - h_y) x T per layer).
"""

from __future__ import annotations

from typing import NamedTuple

from .blocks import adaln_width, gated
from .spec import Spec

FP32 = 4


class Term(NamedTuple):
    """The fields of planner.activations.Term (which converts these): bytes per token and per sample, and
    the divisor ("1", "t" or "d")."""

    per_token: float
    per_sample: float
    divisor: str


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

    def norm(prefix: str, modulate: bool = True, affine: bool | None = None) -> None:
        """LayerNorm (fused): input + statistics. RMSNorm: input, rstd (fp32, and at the activation dtype
        below fp32, with an fp32 copy of the input), and with a weight its normalised tensor."""
        affine = m.affine_norms if affine is None else affine
        add(f"{prefix}.input", h * B, div="d")
        if m.norm == "rmsnorm":
            add(f"{prefix}.stats", FP32 + (B if B != FP32 else 0), div="d")
            if B != FP32:
                add(f"{prefix}.fp32_input", h * FP32, div="d")
            if affine:
                add(f"{prefix}.normed", h * B, div="d")
        else:
            add(f"{prefix}.stats", stats, div="d")
        if modulated and modulate:
            add(f"{prefix}.x_norm", h * B, div="d")

    def qk_saved(prefix: str, n_q: float, n_k: float, heads_q: float, heads_k: float, k_per_sample: bool,
                 rope: bool) -> None:
        """q/k norm and RoPE: statistics, RMSNorm's normalised tensor (kept for the weight), and the new q, k
        that the attention keeps (the norm's or the rotation's output). n_q, n_k: widths per token."""
        def put(name: str, q_part: float, k_part: float) -> None:
            if k_per_sample:
                add(name, q_part, per_sample=T_k * k_part, div="t")
            else:
                add(name, q_part + k_part, div="t")
        if m.qk_norm != "none" and m.qk_norm_width == "all":
            # over all heads the norm flattens q and k: a copy of k (a strided view of the fused projection),
            # and of q in self-attention unless GQA already regrouped it into a copy
            q_copied = k_per_sample or g < a
            put(f"{prefix}.qk_flat_input", 0 if q_copied else n_q * B, n_k * B)
        if m.qk_norm == "rmsnorm":
            stat = FP32 + (B if B != FP32 else 0)
            put(f"{prefix}.qk_norm_stats", heads_q * stat, heads_k * stat)
            if B != FP32:
                put(f"{prefix}.qk_norm_fp32_input", n_q * FP32, n_k * FP32)
            put(f"{prefix}.qk_normed", n_q * B, n_k * B)
        elif m.qk_norm == "layernorm":
            ln_stats = 2 * (B if cpu else FP32)
            put(f"{prefix}.qk_norm_stats", heads_q * ln_stats, heads_k * ln_stats)
        if (m.qk_norm != "none" or rope) and not joint_cat:
            put(f"{prefix}.qk_new", n_q * B, n_k * B)
        if rope and m.pos == "rope3d-learned" and (m.qk_norm != "none" or not joint_cat):
            # learned frequencies: the rotation's multiplications keep their q, k inputs for the gradient
            put(f"{prefix}.rope_inputs", n_q * B, n_k * B)

    def qk_and_rope(prefix: str) -> None:
        rope = m.pos in ("rope3d", "rope3d-learned")
        if g < a and (m.qk_norm != "none" or not rope):
            add(f"{prefix}.q_copy", h * B, div="t")       # GQA: q regrouped out of the fused qkv (a copy)
        all_heads = m.qk_norm_width == "all"
        qk_saved(prefix, h, kv, 1 if all_heads else a, 1 if all_heads else g, False, rope)

    def core(prefix: str) -> None:
        if flash:
            add(f"{prefix}.core_lse", a * FP32, div="t")
        else:
            K = spec.seq_len
            add(f"{prefix}.softmax_out", a * K * max(B, FP32), div="t")
            if B != FP32:
                add(f"{prefix}.attn_probs", a * K * B, div="t")
        add(f"{prefix}.proj_input", h * B, div="t")

    T_k = v.text_tokens
    joint_cat = m.text_mode == "mmdit" and layer < m.layers      # double-stream: q, k, v concatenated
    streams = 2 if m.text_mode == "mmdit" and layer < m.layers else 1
    if modulated and m.adaln == "expert" and layer < m.layers:
        # CogVideoX: each of the two Linear(e, 6h) keeps SiLU(c); the text / video halves are expanded to
        # every token, so (1 + scale) and the gate are per-token tensors
        add("adaln.linear_input", per_sample=2 * adaln_width(m) * B)
        add("expert.one_plus_scale", 2 * h * B, div="d")
        add("expert.gate", 2 * h * B, div="d")
    elif modulated:
        mod = 6 if layer < m.layers else 3
        e = adaln_width(m)
        if m.adaln == "per-block" or layer >= m.layers:
            add("adaln.linear_input", per_sample=streams * e * B)
        add("adaln.mod", per_sample=streams * mod * h * B)
        add("modulate.one_plus_scale", per_sample=streams * (1 if layer >= m.layers else 2) * h * B)
    if layer >= m.layers:                                   # single-stream block
        norm("norm")
        add("linear1.input", h * B, div="d")
        add("linear1.out", (h + 2 * kv + (2 if gated(m) else 1) * f) * B, div="t")
        qk_and_rope("attn")
        core("attn")
        add("linear2.input", (h + f) * B, div="t")
        if modulated:
            add("gate.out", h * B, div="d")
        return terms
    norm("norm1")
    add("self_attn.qkv_input", h * B, div="d")
    if joint_cat:
        # the streams' q, k, v are concatenated for the joint attention (copies kept by the attention); the
        # fused projection's output stays only as the q/k norm's input
        if m.qk_norm != "none":
            add("self_attn.qkv", (h + 2 * kv) * B, div="t")
        add("self_attn.joint_qkv", (h + 2 * kv) * B, div="t")
    else:
        add("self_attn.qkv", (h + 2 * kv) * B, div="t")
    qk_and_rope("self_attn")
    core("self_attn")
    if modulated:
        add("gate1.attn_out", h * B, div="d")
    if m.cross_attn:
        T = v.text_tokens
        if m.cross_attn_norm or not modulated:
            norm("norm_cross", modulate=False, affine=True)
        add("cross_attn.q_input", h * B, div="d")
        add("cross_attn.q", h * B, div="t")
        add("cross_attn.kv", per_sample=2 * T * kv * B, div="t")
        all_heads = m.qk_norm_width == "all"
        qk_saved("cross_attn", h, kv, 1 if all_heads else a, 1 if all_heads else g, True, False)
        if flash:
            add("cross_attn.core_lse", a * FP32, div="t")
            add("cross_attn.core_mask", per_sample=T * B)
        else:
            add("cross_attn.softmax_out", a * T * max(B, FP32), div="t")
        add("cross_attn.proj_input", h * B, div="t")
    if m.text_mode == "mmdit" and m.text_hidden is not None:
        _asymmetric(terms, spec, layer)
        return terms
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
        # token ids (int64) kept by the embedding, the final norm (as in the blocks), the logits' input, the
        # cross-entropy's fp32 log-softmax and its int64 targets; the logits themselves are only cast
        out_lm = {"embed.token_ids": Term(8.0, 0.0, "1")}
        if m.norm == "rmsnorm":
            out_lm["final.norm_input"] = Term(h * B + FP32 + (B if B != FP32 else 0), 0.0, "1")
            if B != FP32:
                out_lm["final.fp32_input"] = Term(h * FP32, 0.0, "1")
            out_lm["final.normed"] = Term(h * B, 0.0, "1")
        else:
            out_lm["final.norm_input"] = Term(h * B + stats, 0.0, "1")
        out_lm["final.linear_input"] = Term(h * B, 0.0, "1")
        out_lm["loss.log_softmax"] = Term(m.vocab_size * FP32, 0.0, "1")
        out_lm["loss.targets"] = Term(8.0, 0.0, "1")
        return out_lm
    out: dict[str, Term] = {}
    e = adaln_width(m)
    out["embed.t_embedder"] = Term(0.0, (m.timestep_freq_dim + 2 * e) * B, "1")
    if m.guidance_embed:
        out["embed.guidance_embedder"] = Term(0.0, (m.timestep_freq_dim + 2 * e) * B, "1")
    if m.text_mode != "none":
        w = m.text_hidden or h
        if m.text_proj == "refiner":
            out["embed.text_proj"] = Term(0.0, _refiner_bytes(spec), "1")
        else:
            width = {"mlp": v.text_dim + 2 * w, "linear": v.text_dim}[m.text_proj]
            out["embed.text_proj"] = Term(0.0, v.text_tokens * width * B, "1")
    if m.pooled_text_dim and m.pooled_text != "attn-pool":
        P = m.pooled_text_dim      # Linear(P, h) keeps its input; the MLP also SiLU's input and Linear(h, h)'s
        out["embed.pooled_text_proj"] = Term(0.0, (P + (2 * h if m.pooled_text == "mlp" else 0)) * B, "1")
    if m.pooled_text == "attn-pool" and m.pooled_text_dim:
        # Mochi's attention pool: to_kv keeps the text [T, P], to_q the mean token [P]; the attention its
        # q [P], the kv output [T, 2P] (k and v are views), the output [P] (to_out's input) and the fp32
        # logsumexp of its 8 heads
        P, Tt = m.pooled_text_dim, v.text_tokens
        out["embed.attn_pool"] = Term(0.0, (3 * Tt * P + 3 * P) * B + 8 * FP32, "1")
    pv_c = v.patch_volume * v.latent_channels
    # per-token terms count the s tokens of the sequence, which include the text for `in-sequence` and
    # `mmdit`: the video-only tensors take the text tokens off per sample. Only the final norm's input of
    # `in-sequence` is a view of the whole [text; video] storage (the blocks' output, sliced).
    T = v.text_tokens if m.text_mode in ("in-sequence", "mmdit") else 0
    T_in = T if m.text_mode == "mmdit" else 0
    out["embed.patch_input"] = Term(pv_c * B, -T * pv_c * B, "1")
    if m.cond_in_channels:         # Linear(C_cond, h) keeps the conditioning latents of every video token
        out["embed.cond_embed"] = Term(m.cond_in_channels * B, -T * m.cond_in_channels * B, "1")
    out["final.norm_input"] = Term(h * B + stats, -T_in * h * B - T * stats, "1")
    if m.adaln == "expert":        # CogVideoX's final layer: norm_final, then norm_out (input + statistics)
        out["final.norm_out_input"] = Term(h * B + stats, -T * (h * B + stats), "1")
    if m.norm == "rmsnorm":
        # RMSNorm keeps more than its input and one statistic (as in the blocks): the rstd at the activation
        # dtype too and an fp32 copy of the input below fp32, and its normalised tensor when it has a weight
        # (the final norm: without modulation; CogVideoX: both norms), over the S video tokens
        n_norms = 2 if m.adaln == "expert" else 1
        affine = m.adaln in ("none", "expert")
        extra = (FP32 + (B if B != FP32 else 0) - stats) + (h * FP32 if B != FP32 else 0) + (h * B if affine else 0)
        out["final.rmsnorm_extra"] = Term(n_norms * extra, -T * n_norms * extra, "1")
    if m.adaln in ("per-block", "expert"):
        out["final.adaln_input"] = Term(0.0, e * B, "1")        # SiLU(c) kept by the final Linear(e, 2h)
    if m.adaln != "none":
        out["final.x_norm"] = Term(h * B, h * B - T * h * B, "1")
    out["final.linear_input"] = Term(h * B, -T * h * B, "1")
    out["loss.diff"] = Term(pv_c * FP32, -T * pv_c * FP32, "1")
    return out


def _refiner_bytes(spec: Spec) -> float:
    """Saved bytes per sample of HunyuanVideo's token refiner (models/blocks.TextRefiner) over T text tokens of
    width D: the input Linear keeps the text [T, D], the timestep MLP (freq + 2h) and the context MLP
    (D + 2h) their inputs, SiLU its input c [h]; per block, LayerNorms (input + statistics) before the
    attention and the MLP, the adaLN Linear's input [h] and output [2h] (the gates are views), qkv's input
    and output [T, 3h] (q, k, v are views), the attention output [T, h] with its fp32 logsumexp, the output
    projection's input (a copy of the output when there is more than one head) and output (kept by the gate),
    fc1's input and output [T, 4h] (SiLU's input), fc2's input [T, 4h] and output (kept by the gate)."""
    m, k, v = spec.model, spec.kernels, spec.video
    h, B, T, D = m.hidden, k.act_bytes, v.text_tokens, v.text_dim
    heads = max(1, h // 128)
    ln_stats = 2 * (B if k.cpu_semantics else FP32)
    block = (T * h * (18 + (1 if heads > 1 else 0)) + 3 * h) * B + 2 * T * ln_stats + heads * T * FP32
    return (T * D + m.timestep_freq_dim + 2 * h + D + 2 * h + h) * B + m.text_refiner_layers * block


def _asymmetric(terms: dict[str, Term], spec: Spec, layer: int) -> None:
    """Mochi's asymmetric block: the MLP half of the standard terms, then the text tokens' tensors at their
    own width h_y (corrections per sample), scale/gate modulation (4 vectors per stream), and a last block
    that keeps nothing of the text after the attention."""
    m, k, v = spec.model, spec.kernels, spec.video
    h, f, B, T = m.hidden, m.ffn, k.act_bytes, v.text_tokens
    hy, fy = m.text_hidden or h, m.text_ffn_hidden or f
    last = layer == m.layers - 1
    nf = 2 if m.ffn_type in ("swiglu", "geglu") else 1
    stat = terms["norm1.stats"].per_token

    def add(name: str, per_token: float, div: str) -> None:
        terms[name] = Term(per_token, 0.0, div)

    add("norm2.input", h * B, "d")
    add("norm2.stats", stat, "d")
    if "norm1.fp32_input" in terms:
        add("norm2.fp32_input", h * FP32, "d")
    add("norm2.x_norm", h * B, "d")
    add("mlp.fc1_input", h * B, "d")
    add("mlp.fc1_out", nf * f * B, "t")
    add("mlp.act_out", f * B, "t")
    add("mlp.fc2_input", f * B, "t")
    add("gate2.mlp_out", h * B, "d")
    if nf == 1:
        terms["mlp.gelu_input"] = terms.pop("mlp.fc1_out")
        del terms["mlp.act_out"]
    # text tokens at width h_y (the same names, a per-sample correction of T tokens)
    width = {"norm1.input": (h, hy), "norm1.x_norm": (h, hy), "self_attn.qkv_input": (h, hy),
             "gate1.attn_out": (h, 0 if last else hy), "norm2.input": (h, 0 if last else hy),
             "norm2.stats": (stat / B, 0 if last else stat / B), "norm2.x_norm": (h, 0 if last else hy),
             "mlp.fc1_input": (h, 0 if last else hy), "mlp.fc1_out": (nf * f, 0 if last else nf * fy),
             "mlp.gelu_input": (f, 0 if last else fy), "mlp.act_out": (f, 0 if last else fy),
             "mlp.fc2_input": (f, 0 if last else fy), "gate2.mlp_out": (h, 0 if last else hy),
             "norm1.fp32_input": (h * FP32 / B, hy * FP32 / B),
             "norm2.fp32_input": (h * FP32 / B, 0 if last else hy * FP32 / B)}
    for name, (video_w, text_w) in width.items():
        if name in terms:
            t = terms[name]
            terms[name] = Term(t.per_token, t.per_sample + T * (text_w - video_w) * B, t.divisor)
    terms["adaln.mod"] = Term(0.0, (4 * h + (0 if last else 4 * hy)) * B, "1")   # the last text scale: a copy
    terms["modulate.one_plus_scale"] = Term(0.0, (2 * h + (hy if last else 2 * hy)) * B, "1")
