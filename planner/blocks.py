"""Parameter groups of the current video-DiT and LLM block vocabulary (one Spec, docs/presets.md).

`planner/params.py` counts the DiT / PixArt / U-ViT blocks; a spec that uses any field of the newer
vocabulary (`Model.extended`: gated FFN, RMSNorm, QK-norm, GQA, RoPE, text in the sequence, MMDiT, single-stream
blocks, expert adaLN, language-model embeddings) is counted here. Notation: h hidden, f FFN hidden, a heads,
g key/value heads, d = h / a head dim, D text-encoder width, P pooled-text width, e adaLN width
(`adaln_dim`, default h), C latent channels, pv patch volume, V vocabulary.

  attention    linear_qkv h -> h + 2gd (col), linear_proj h -> h (row); q/k norms over d (replicated) or over
               all heads (split); cross-attention: linear_q h -> h, linear_kv h -> 2gd (text projected to h)
  ffn          gelu: fc1 h -> f, fc2 f -> h; swiglu / geglu: fc1 h -> 2f (gate and up, fused), fc2 f -> h
  norms        LayerNorm 2h (weight, bias), RMSNorm h (weight); none when modulated without affine
  adaLN        per-block Linear(e, 6h) (replicated over TP, like every modulation here); single: a 6h table per block + one shared Linear(h, 6h);
               expert (CogVideoX): two Linear(e, 6h) per block (video and text shift/scale/gate)
  mmdit        double-stream: the block above twice (video and text weights), joint attention
               asymmetric (Mochi, text_hidden < h): video qkv h -> 3h, text qkv h_y -> 3h, proj_y h -> h_y,
               modulation Linear(h, 4h) / Linear(h, 4h_y) (scale and gate only); the last block does not
               update text (no proj_y, no text MLP, modulation Linear(h, h_y))
  single       fused parallel block: linear1 h -> 3h + f (+f gated), linear2 h + f -> h, Linear(h, 3h)
"""

from __future__ import annotations

from .spec import Model, Spec

Group = tuple[str, int, int]      # (name, total, tp_split)


def lin(n_in: int, n_out: int, bias: bool) -> int:
    """Parameters of one Linear.

    Args:
        n_in: input features.
        n_out: output features.
        bias: whether it carries a bias.

    Returns:
        n_in * n_out (+ n_out).
    """
    return n_in * n_out + (n_out if bias else 0)


def norm_params(m: Model, width: int, kind: str | None = None) -> int:
    """Parameters of one affine norm of `width` (LayerNorm: weight + bias; RMSNorm: weight)."""
    kind = kind or m.norm
    return 2 * width if kind == "layernorm" else width


def _qk_norms(m: Model, prefix: str, q_width: int, k_width: int) -> list[Group]:
    if m.qk_norm == "none":
        return []
    d = m.head_dim
    if m.qk_norm_width == "head":
        n = norm_params(m, d, m.qk_norm)
        return [(f"{prefix}.q_norm", n, 0), (f"{prefix}.k_norm", n, 0)]
    nq, nk = norm_params(m, q_width, m.qk_norm), norm_params(m, k_width, m.qk_norm)
    return [(f"{prefix}.q_norm", nq, nq), (f"{prefix}.k_norm", nk, nk)]


def self_attention(m: Model, prefix: str = "self_attn", width: int | None = None) -> list[Group]:
    """Fused QKV and output projection (MHA / GQA) with q/k norms, input width `width` (default h)."""
    h = m.hidden
    w = h if width is None else width
    kv = m.n_kv_heads * m.head_dim
    qkv = lin(w, h + 2 * kv, m.qkv_bias)
    proj = lin(h, w, m.out_bias)
    return [(f"{prefix}.linear_qkv", qkv, qkv), (f"{prefix}.linear_proj", proj, proj - (w if m.out_bias else 0))] \
        + _qk_norms(m, prefix, h, kv)


def cross_attention(m: Model) -> list[Group]:
    """Query from the video, keys and values from the projected text (width h)."""
    h = m.hidden
    kv = m.n_kv_heads * m.head_dim
    q, kvp, proj = lin(h, h, m.qkv_bias), lin(h, 2 * kv, m.qkv_bias), lin(h, h, m.out_bias)
    out = [("cross_attn.linear_q", q, q), ("cross_attn.linear_kv", kvp, kvp),
           ("cross_attn.linear_proj", proj, proj - (h if m.out_bias else 0))] + _qk_norms(m, "cross_attn", h, kv)
    return out


def gated(m: Model) -> bool:
    return m.ffn_type in ("swiglu", "geglu")


def mlp(m: Model, prefix: str = "mlp", width: int | None = None, ffn: int | None = None) -> list[Group]:
    """FFN of input width `width` (default h) and hidden `ffn` (default f); gated kinds fuse gate and up."""
    w = m.hidden if width is None else width
    f = m.ffn if ffn is None else ffn
    fc1 = lin(w, (2 if gated(m) else 1) * f, m.ffn_bias)
    fc2 = lin(f, w, m.ffn_bias)
    return [(f"{prefix}.linear_fc1", fc1, fc1), (f"{prefix}.linear_fc2", fc2, fc2 - (w if m.ffn_bias else 0))]


def adaln_width(m: Model) -> int:
    return m.adaln_dim if m.adaln_dim is not None else m.hidden


def dit_layer(spec: Spec) -> list[Group]:
    """One block with text as cross-attention, in the sequence, or absent (and LLM blocks)."""
    m = spec.model
    h = m.hidden
    out = self_attention(m)
    if m.cross_attn:
        out += cross_attention(m)
        if m.cross_attn_norm or m.adaln == "none":
            out.append(("norm_cross", norm_params(m, h), 0))
    out += mlp(m)
    if m.affine_norms:
        out.append(("norms", 2 * norm_params(m, h), 0))
    e = adaln_width(m)
    if m.adaln == "per-block":
        out.append(("adaln.linear", lin(e, 6 * h, True), 0))
    elif m.adaln == "single":
        out.append(("adaln.scale_shift_table", 6 * h, 0))
    elif m.adaln == "expert":
        out.append(("adaln.expert", 2 * lin(e, 6 * h, True), 0))
    return out


def mmdit_layer(spec: Spec) -> list[Group]:
    """A double-stream block: video and text streams with their own weights, attending jointly."""
    m = spec.model
    h = m.hidden
    out: list[Group] = []
    for stream in ("img", "txt"):
        out += [(f"{stream}.{n}", t, s) for n, t, s in self_attention(m) + mlp(m)]
        if m.affine_norms:
            out.append((f"{stream}.norms", 2 * norm_params(m, h), 0))
        mod = lin(adaln_width(m), 6 * h, True)
        out.append((f"{stream}.adaln.linear", mod, 0))
    return out


def asymmetric_layer(spec: Spec, last: bool) -> list[Group]:
    """Mochi's asymmetric joint block: a text stream of width h_y < h; the last block leaves text as it is."""
    m = spec.model
    h, hy = m.hidden, m.text_hidden or m.hidden
    fy = m.text_ffn_hidden or m.ffn
    qkv_x, qkv_y = lin(h, 3 * h, m.qkv_bias), lin(hy, 3 * h, m.qkv_bias)
    proj_x = lin(h, h, m.out_bias)
    mod_x = lin(h, 4 * h, True)
    mod_y = lin(h, hy if last else 4 * hy, True)
    out: list[Group] = [("img.adaln.linear", mod_x, 0), ("txt.adaln.linear", mod_y, 0),
                        ("img.linear_qkv", qkv_x, qkv_x), ("txt.linear_qkv", qkv_y, qkv_y),
                        ("img.linear_proj", proj_x, proj_x - (h if m.out_bias else 0))]
    out += [(f"img.{n}", t, s) for n, t, s in _qk_norms(m, "attn", h, h)]
    out += [(f"txt.{n}", t, s) for n, t, s in _qk_norms(m, "attn", h, h)]
    out += [(f"img.{n}", t, s) for n, t, s in mlp(m)]
    if not last:
        proj_y = lin(h, hy, m.out_bias)
        out.append(("txt.linear_proj", proj_y, proj_y - (hy if m.out_bias else 0)))
        out += [(f"txt.{n}", t, s) for n, t, s in mlp(m, width=hy, ffn=fy)]
    return out


def single_layer(spec: Spec) -> list[Group]:
    """A single-stream block (Flux / HunyuanVideo): one fused input and one fused output projection."""
    m = spec.model
    h, f = m.hidden, m.ffn
    kv = m.n_kv_heads * m.head_dim
    l1 = lin(h, h + 2 * kv + (2 if gated(m) else 1) * f, m.qkv_bias)
    l2 = lin(h + f, h, m.out_bias)
    out: list[Group] = [("linear1", l1, l1), ("linear2", l2, l2 - (h if m.out_bias else 0))]
    out += _qk_norms(m, "attn", h, kv)
    if m.affine_norms:
        out.append(("norm", norm_params(m, h), 0))
    if m.adaln != "none":
        mod = lin(adaln_width(m), 3 * h, True)
        out.append(("adaln.linear", mod, 0))
    return out


def asymmetric(spec: Spec) -> bool:
    m = spec.model
    return m.text_mode == "mmdit" and m.text_hidden is not None


def layer_groups(spec: Spec) -> list[Group]:
    """The groups of one (non-last) block of the main stack."""
    m = spec.model
    if m.text_mode == "mmdit":
        return asymmetric_layer(spec, last=False) if asymmetric(spec) else mmdit_layer(spec)
    return dit_layer(spec)


def _sum(groups: list[Group]) -> tuple[int, int]:
    return sum(t for _, t, _ in groups), sum(s for _, _, s in groups)


def block_stacks(spec: Spec) -> list[tuple[str, int, int]]:
    """(group name, total, tp_split) of the block stacks: `blocks` and, if any, `single_blocks`."""
    m = spec.model
    total, split = _sum(layer_groups(spec))
    total, split = m.layers * total, m.layers * split
    if asymmetric(spec):      # the last block does not update text
        lt, ls = _sum(asymmetric_layer(spec, last=True))
        ft, fs = _sum(asymmetric_layer(spec, last=False))
        total, split = total - ft + lt, split - fs + ls
    out = [("blocks", total, split)]
    if m.single_layers:
        st, ss = _sum(single_layer(spec))
        out.append(("single_blocks", m.single_layers * st, m.single_layers * ss))
    return out


def timestep_mlp(m: Model) -> int:
    """Linear(freq, e) -> SiLU -> Linear(e, e), e the adaLN width."""
    e = adaln_width(m)
    return lin(m.timestep_freq_dim, e, True) + lin(e, e, True)


def text_proj(spec: Spec) -> int:
    """Text-encoder states (D) -> the text width: MLP, one Linear, or HunyuanVideo's token refiner."""
    m, D = spec.model, spec.video.text_dim
    h = m.hidden
    w = m.text_hidden or h
    if m.text_proj == "mlp":
        return lin(D, w, True) + lin(w, w, True)
    if m.text_proj == "linear":
        return lin(D, w, True)
    # refiner: input Linear, its own timestep MLP, a context MLP of the mean text state, R refiner blocks
    # (affine LayerNorms, qkv / proj with bias, SiLU MLP 4h, adaLN Linear(h, 2h) for the gates)
    block = 2 * 2 * h + lin(h, 3 * h, True) + lin(h, h, True) + lin(h, 4 * h, True) + lin(4 * h, h, True) \
        + lin(h, 2 * h, True)
    return lin(D, h, True) + lin(m.timestep_freq_dim, h, True) + lin(h, h, True) + lin(D, h, True) \
        + lin(h, h, True) + m.text_refiner_layers * block


def pooled_text(m: Model) -> int:
    """The pooled text vector P -> h: MLP, one Linear, or an attention pool over the encoder tokens (Mochi)."""
    P, h = m.pooled_text_dim, m.hidden
    if m.pooled_text == "mlp":
        return lin(P, h, True) + lin(h, h, True)
    if m.pooled_text == "linear":
        return lin(P, h, True)
    return lin(P, 2 * P, True) + lin(P, P, True) + lin(P, h, True)


def final_layer(spec: Spec) -> int:
    """Output norm, modulation and projection of a video model (an LLM: its final norm)."""
    m, v = spec.model, spec.video
    h = m.hidden
    if m.vocab_size:
        return norm_params(m, h)
    c_out = v.latent_channels * (2 if m.learn_sigma else 1)
    proj = lin(h, v.patch_volume * c_out, True)
    e = adaln_width(m)
    if m.adaln == "per-block":
        return lin(e, 2 * h, True) + proj
    if m.adaln == "single":
        return 2 * h + proj
    if m.adaln == "expert":        # CogVideoX: norm_final + AdaLayerNorm (Linear(e, 2h) + affine LayerNorm)
        return 2 * norm_params(m, h) + lin(e, 2 * h, True) + proj
    return norm_params(m, h) + proj


def embed_groups(spec: Spec) -> list[tuple[str, int, int, str]]:
    """(name, total, tp_split, placement) of every group outside the block stacks, in model order."""
    m, v = spec.model, spec.video
    h = m.hidden
    out: list[tuple[str, int, int, str]] = []
    if m.vocab_size:
        out.append(("token_embed", m.vocab_size * h, m.vocab_size * h, "first"))
        if m.learned_pos_embed:
            out.append(("pos_embed", spec.seq_len * h, 0, "first"))
        out.append(("final_layer", final_layer(spec), 0, "last"))
        if not m.tied_embeddings:
            out.append(("output_head", m.vocab_size * h, m.vocab_size * h, "last"))
        return out
    out.append(("patch_embed", lin(v.latent_channels * v.patch_volume, h, True), 0, "first"))
    if m.cond_in_channels:
        out.append(("cond_embed", lin(m.cond_in_channels, h, True), 0, "first"))
    if m.conditioning == "class":
        out.append(("class_embed", (m.num_classes + 1) * h, 0, "every"))
    if m.time_mlp:
        out.append(("t_embedder", timestep_mlp(m), 0, "every"))
    if m.guidance_embed:
        out.append(("guidance_embedder", timestep_mlp(m), 0, "every"))
    if m.pooled_text_dim:
        out.append(("pooled_text_proj", pooled_text(m), 0, "every"))
    if m.learned_pos_embed:
        out.append(("pos_embed", spec.seq_len * h, 0, "first"))
    if m.pos == "rope3d-learned":          # learned frequencies (3 axes, heads, d/2)
        out.append(("pos_frequencies", 3 * m.heads * (m.head_dim // 2), 0, "every"))
    if m.adaln == "single":
        out.append(("t_block", lin(h, 6 * h, True), 0, "every"))
    if m.text_mode != "none":     # joint text enters the sequence on the first stage; cross-attention reads it on all
        out.append(("text_proj", text_proj(spec), 0, "first" if m.text_mode in ("in-sequence", "mmdit") else "every"))
    out.append(("final_layer", final_layer(spec), 0, "last"))
    return out


def block_params(spec: Spec, index: int, tp: int = 1) -> int:
    """Parameters one TP rank holds of block `index` (0-based: the main stack, then the single-stream blocks)."""
    m = spec.model
    if index >= m.layers:
        groups = single_layer(spec)
    elif asymmetric(spec):
        groups = asymmetric_layer(spec, last=index == m.layers - 1)
    else:
        groups = layer_groups(spec)
    return sum(s // tp + (t - s) for _, t, s in groups)


def stage_params(spec: Spec, stage: int) -> int:
    """Parameters one GPU of pipeline stage `stage` holds: its blocks (depth / pp consecutive blocks, the main
    stack then the single-stream blocks, so stages differ when the block kinds differ), the "every" groups,
    and the "first" / "last" groups on the first / last stage."""
    m, p = spec.model, spec.parallel
    n = m.depth // p.pp
    out = sum(block_params(spec, i, p.tp) for i in range(stage * n, (stage + 1) * n))
    for name, total, split, placement in embed_groups(spec):
        if placement == "every" or (placement == "first" and stage == 0) or (placement == "last" and stage == p.pp - 1):
            out += split // p.tp + (total - split)
    return out


def max_stage_params(spec: Spec) -> int:
    """Parameters per GPU of the most loaded pipeline stage."""
    return max(stage_params(spec, s) for s in range(spec.parallel.pp))
