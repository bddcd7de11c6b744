"""Activation memory: the bytes of tensors saved for backward, op by op, per GPU.

Every term is one tensor that autograd keeps between forward and backward in the model that
`soraplan.models` builds (`soraplan validate` measures them with saved_tensors_hooks, de-duplicated by storage).

Each term is a `Term(per_token, per_sample, divisor)`: for one micro-batch of b samples on one GPU it
costs  b * (s * per_token + per_sample) / div  bytes, where s = tokens per CP rank and div is
"1", "t" (tensor-parallel size: tensors inside the TP regions) or "d" (t with sequence parallel, else 1:
tensors outside the TP regions). That structure is what lets `plan` evaluate millions of layouts at once
(the layout only changes s, b, t and d); `layer_terms`, `shared_terms` and `layer_input_term` depend on the
model, video and kernels only.

Notation: h hidden, f FFN hidden, a heads, T text tokens, K keys per query, B activation bytes,
m dropout-mask bytes (1 on GPU, B with CPU semantics), LayerNorm statistics are fp32 (mean + rstd).
"""

from __future__ import annotations

from dataclasses import dataclass

from .flops import attention_keys
from .spec import Spec

FP32 = 4


@dataclass(frozen=True)
class Term:
    per_token: float       # bytes per token (of the CP rank's s tokens) per sample
    per_sample: float      # bytes per sample independent of s (text-side tensors)
    divisor: str           # "1" | "t" | "d"


def _attention_regrouped(spec: Spec) -> bool:
    """Window / spatial-temporal self-attention regroups tokens into the batch (a copy of q, k, v going in
    and of the core output coming out); full attention passes views."""
    return spec.model.attention_kind != "full"


def layer_terms(spec: Spec, layer: int = 0) -> dict[str, Term]:
    """The saved tensors of one transformer layer (see the module docstring for the cost of a Term).

    Op by op, what autograd keeps in `soraplan.models.layer.DiTLayer` (measured by `soraplan validate`):
      LayerNorm           its input and mean + rstd (fp32 on GPU; at the input dtype on CPU)
      y * (1 + scale)     y (the normed x) and (1 + scale) [B, h]; "+ shift" keeps nothing
      gate * y            gate (a view of the [B, 6h] modulation tensor) and y
      Linear              its input (Megatron: the sequence shard under SP, re-gathered in backward)
      GELU                its input (fc1 output + bias); fc2 keeps the GELU output
      dropout (CPU)       input * (bernoulli mask / (1-p)): the mask at the activation dtype
      dropout (GPU)       a 1-byte mask
      flash SDPA          q, k, v, out, logsumexp (fp32) and a float copy of the padding mask (cross-attn)
      unfused (Megatron)  baddbmm keeps q, k; softmax its output (fp32 from the torch fallback, with a
                          bf16 copy kept by the AV bmm; 16-bit from the fused GPU kernel: `fused_softmax`);
                          the AV bmm keeps the probabilities and v; dropout its mask
    Storage sharing (saved tensors are counted once per storage):
      * q, k, v are views of the fused qkv output ("qkv", 3h), text k, v views of the kv output;
      * the flash output, seen as [s, B, h], is a view that linear_proj saves: counted once, as
        "proj_input" (full attention); regrouped attention copies it back ("core_out" + "proj_input");
      * the 6 modulation vectors are views of one [B, 6h] tensor per layer.
    CPU has no fused SDPA kernel with dropout: SDPA falls back to its math path, which keeps q*scale,
    k*scale, the softmax output, the dropout mask, the dropped probabilities and v (and not q for
    cross-attention, whose q*scale takes its place).
    """
    m, k, v = spec.model, spec.kernels, spec.video
    if m.extended:  # current video DiTs and LLMs: planner/blocks_activations.py
        from .blocks_activations import layer_terms as extended_layer_terms

        return {name: Term(*t) for name, t in extended_layer_terms(spec, layer).items()}
    h, f, a = m.hidden, m.ffn, m.heads
    B = k.act_bytes
    cpu = k.cpu_semantics
    mask = B if cpu else 1
    stats = 2 * (B if cpu else FP32)            # LayerNorm mean + rstd per token
    drop = k.dropout > 0
    modulated = m.adaln != "none"
    K = attention_keys(spec, layer)   # full attention: every query sees all S keys (CP ranks included)
    T = v.text_tokens
    flash = k.attention_kernel == "flash"
    math_path = flash and drop and cpu          # CPU SDPA + dropout: the math fallback
    terms: dict[str, Term] = {}

    def add(name: str, per_token: float = 0.0, per_sample: float = 0.0, div: str = "1") -> None:
        terms[name] = Term(per_token, per_sample, div)

    def attn_core(prefix: str, k_len: int, cross: bool) -> None:
        # q, k, v are saved by the attention op and counted with their producers ("qkv", "q", "kv").
        regrouped = not cross and _attention_regrouped(spec)
        if math_path:
            if not cross:
                add(f"{prefix}.core_q_scaled", h * B, div="t")             # q * scale
                add(f"{prefix}.core_k_scaled", h * B, div="t")             # k^T * scale
            else:
                add(f"{prefix}.core_k_scaled", per_sample=T * h * B, div="t")  # (q * scale replaces q)
            add(f"{prefix}.softmax_out", a * k_len * B, div="t")
            add(f"{prefix}.attn_dropout_mask", a * k_len * mask, div="t")
            add(f"{prefix}.attn_dropped_probs", a * k_len * B, div="t")
            add(f"{prefix}.proj_input", h * B, div="t")                    # [B*a, s, d] -> [s, B, h]: a copy
        elif flash:
            if regrouped:
                add(f"{prefix}.core_out", h * B, div="t")
            add(f"{prefix}.core_lse", a * FP32, div="t")
            if cross:
                add(f"{prefix}.core_mask", per_sample=T * B)               # float padding mask [B, 1, 1, T]
            add(f"{prefix}.proj_input", h * B, div="t")                    # = the core output (full attention)
        else:
            softmax_bytes = B if fused_softmax(spec, k_len) else max(B, FP32)   # torch fallback: fp32
            add(f"{prefix}.softmax_out", a * k_len * softmax_bytes, div="t")
            if drop:
                add(f"{prefix}.attn_dropout_mask", a * k_len * mask, div="t")
                add(f"{prefix}.attn_dropped_probs", a * k_len * B, div="t")
            elif softmax_bytes != B:
                add(f"{prefix}.attn_probs", a * k_len * B, div="t")        # fp32 softmax cast back, kept by AV
            add(f"{prefix}.proj_input", h * B, div="t")

    # --- adaLN modulation (per sample: [B, 6h] shift/scale/gate x 2, replicated over TP) ------------
    if m.adaln == "per-block":
        add("adaln.linear_input", per_sample=h * B)       # SiLU(c), kept by Linear(h, 6h)
    if modulated:
        add("adaln.mod", per_sample=6 * h * B)             # the gates are views of it
        add("modulate1.one_plus_scale", per_sample=h * B)
        add("modulate2.one_plus_scale", per_sample=h * B)
    # --- self-attention -----------------------------------------------------------------------------
    add("norm1.input", h * B, div="d")
    add("norm1.stats", stats, div="d")
    if modulated:
        add("modulate1.x_norm", h * B, div="d")          # x_norm kept for d(scale)
    add("self_attn.qkv_input", h * B, div="d")           # SP: the sharded input is kept, re-gathered in bwd
    add("self_attn.qkv", 3 * h * B, div="t")
    attn_core("self_attn", K, cross=False)
    if drop:
        add("self_attn.dropout_mask", h * mask, div="d")
    if modulated:
        add("gate1.attn_out", h * B, div="d")             # kept for d(gate)
    # --- cross-attention (PixArt: no norm, no gate; adaLN none: an affine LayerNorm first) -------------
    if m.cross_attn:
        if not modulated:
            add("norm_cross.input", h * B, div="d")
            add("norm_cross.stats", stats, div="d")
        add("cross_attn.q_input", h * B, div="d")
        add("cross_attn.q", h * B, div="t")
        add("cross_attn.kv", per_sample=2 * T * h * B, div="t")
        attn_core("cross_attn", T, cross=True)
        if drop:
            add("cross_attn.dropout_mask", h * mask, div="d")
    # --- MLP ----------------------------------------------------------------------------------------
    add("norm2.input", h * B, div="d")
    add("norm2.stats", stats, div="d")
    if modulated:
        add("modulate2.x_norm", h * B, div="d")
    add("mlp.fc1_input", h * B, div="d")
    add("mlp.gelu_input", f * B, div="t")
    add("mlp.fc2_input", f * B, div="t")
    if drop:
        add("mlp.dropout_mask", h * mask, div="d")
    if modulated:
        add("gate2.mlp_out", h * B, div="d")
    return terms


def fused_softmax(spec: Spec, k_len: int) -> bool:
    """Whether Megatron's fused scale-mask-softmax CUDA kernel runs the unfused attention's softmax: on a GPU
    (not `kernels.cpu_semantics`), 16-bit activations and 16 < keys <= 4096 with keys % 4 == 0
    (`FusedScaleMaskSoftmax.is_kernel_available`; its other rules, queries % 4 and micro-batch x heads per
    TP rank % 4, hold for the shapes soraplan plans). The kernel keeps its 16-bit output for the backward
    (the AV matmul shares it); elsewhere the torch fallback keeps fp32 probabilities
    (`attention_softmax_in_fp32`) and the AV matmul a 16-bit copy."""
    k = spec.kernels
    return not k.cpu_semantics and k.act_bytes == 2 and 16 < k_len <= 4096 and k_len % 4 == 0


# what selective recompute (Megatron "core_attn": the attention core under a checkpoint) frees
SELECTIVE = ("softmax_out", "attn_dropout_mask", "attn_dropped_probs", "attn_probs", "core_out", "core_lse",
             "core_mask", "core_q_scaled", "core_k_scaled")


def _cost(term: Term, s: int, b: int, t: int, d: int) -> float:
    div = {"1": 1, "t": t, "d": d}[term.divisor]
    return b * (s * term.per_token + term.per_sample) / div


def _layout(spec: Spec) -> tuple[int, int, int, int]:
    p = spec.parallel
    return spec.seq_len // p.cp, p.micro_batch, p.tp, (p.tp if p.sequence_parallel else 1)


def layer_bytes(spec: Spec, layer: int = 0, only: tuple[str, ...] | None = None) -> float:
    """Saved bytes of one layer, one micro-batch, one GPU (no recompute); `only`: name suffixes to keep."""
    s, b, t, d = _layout(spec)
    return sum(_cost(term, s, b, t, d) for name, term in layer_terms(spec, layer).items()
               if only is None or name.endswith(only))


def layer_breakdown(spec: Spec, layer: int = 0) -> dict[str, float]:
    s, b, t, d = _layout(spec)
    return {name: _cost(term, s, b, t, d) for name, term in layer_terms(spec, layer).items()}


def layer_input_term(spec: Spec) -> Term:
    """What full recompute keeps per layer: its input (outside the TP region)."""
    return Term(spec.model.hidden * spec.kernels.act_bytes, 0.0, "d")


def outside_terms(spec: Spec) -> dict[str, Term]:
    """What the model saves outside its transformer layers, once per micro-batch, on whole sequences (not
    TP/SP shards). Like every Term here it depends on the model, video and kernels only (the `plan` search
    evaluates them once for all layouts), so with pp > 1 the final layer's and the loss's terms, which live
    on the last stage, are counted on the first stage too: an overestimate of about 3h bytes per token.

      t_embedder      Linear(256, h) keeps the frequencies, SiLU its input, Linear(h, h) the SiLU output
      class_embed     the int64 labels (the embedding's backward)
      t_block         adaLN single: SiLU keeps c, Linear(h, 6h) keeps SiLU(c)
      text_proj       fc1 keeps the text states [T, D], GELU its input, fc2 the GELU output
      patch_embed     Conv3d keeps the noised latents, cast to the activation dtype
      final_layer     LayerNorm input + stats, (1 + scale) and x_norm when modulated, SiLU(c) for
                      per-block adaLN, and the input of the output Linear
      loss            (out - target) in fp32, kept by the square: C latent channels x patch volume / token
    """
    m, k, v = spec.model, spec.kernels, spec.video
    if m.extended:
        from .blocks_activations import outside_terms as extended_outside_terms

        return {name: Term(*t) for name, t in extended_outside_terms(spec).items()}
    h, B = m.hidden, k.act_bytes
    stats = 2 * (B if k.cpu_semantics else FP32)
    modulated = m.adaln != "none"
    pv_c = v.patch_volume * v.latent_channels
    out: dict[str, Term] = {"embed.t_embedder": Term(0.0, (m.timestep_freq_dim + 2 * h) * B, "1")}
    if m.conditioning == "class":
        out["embed.class_labels"] = Term(0.0, 8.0, "1")
    if m.adaln == "single":
        out["embed.t_block"] = Term(0.0, 2 * h * B, "1")
    if m.cross_attn:
        out["embed.text_proj"] = Term(0.0, v.text_tokens * (v.text_dim + 2 * h) * B, "1")
    out["embed.patch_input"] = Term(pv_c * B, 0.0, "1")
    out["final.norm_input"] = Term(h * B + stats, 0.0, "1")
    if modulated:
        out["final.x_norm"] = Term(h * B, h * B, "1")        # x_norm per token, (1 + scale) per sample
    if m.adaln == "per-block":
        out["final.adaln_input"] = Term(0.0, h * B, "1")     # SiLU(c) kept by Linear(h, 2h)
    out["final.linear_input"] = Term(h * B, 0.0, "1")
    out["loss.diff"] = Term(pv_c * FP32, 0.0, "1")
    return out


def shared_terms(spec: Spec) -> dict[str, Term]:
    """Tensors saved once per micro-batch (not per layer): one storage kept by every layer of a stage,
    and what the model keeps outside its layers (`outside_terms`: names "embed.*", "final.*", "loss.*").
    Model, video and kernels only (no layout): where the model keeps a tensor only under recompute, the
    term is counted always (a per-sample overestimate, noted below).

      text_states   the projected text [T, B, h]: every layer's linear_kv input
      text_mask     the bool padding mask [B, 1, 1, T] (the model always gets one with text), kept by the
                    unfused softmax's masked_fill and by recompute checkpoints (flash without recompute:
                    T bytes per sample too many)
      adaln_cond    per-block: c [B, h], kept by every layer's SiLU; single: t_block(c) [B, 6h], kept only
                    as a full-recompute checkpoint input (otherwise 6h x B bytes per sample too many)
    """
    m, k = spec.model, spec.kernels
    B = k.act_bytes
    out: dict[str, Term] = {}
    if m.cross_attn:
        out["text_states"] = Term(0.0, spec.video.text_tokens * m.hidden * B, "1")
        out["text_mask"] = Term(0.0, spec.video.text_tokens * 1, "1")
    if m.adaln == "per-block":
        out["adaln_cond"] = Term(0.0, m.hidden * B, "1")
    elif m.adaln == "single":
        out["adaln_cond"] = Term(0.0, 6 * m.hidden * B, "1")
    elif m.adaln == "expert":
        out["adaln_cond"] = Term(0.0, (m.adaln_dim or m.hidden) * B, "1")
    out.update(outside_terms(spec))
    return out


def _cp_extra(spec: Spec, per_stage: int) -> tuple[float, float]:
    """What context parallelism adds to one micro-batch of the first stage (`soraplan.planner.cp`)."""
    from .cp import CP_COMMS, cp_constants, cp_extra
    from .scalar_ops import ScalarOps

    p = spec.parallel
    s, b, t, _ = _layout(spec)
    full = per_stage if spec.model.attention_kind == "full" else 0
    recomputed = {"none": 0, "selective": full,
                  "full": min(full, per_stage if p.recompute_layers is None else p.recompute_layers)}[p.recompute]
    outside = sum(x.per_token for x in outside_terms(spec).values())
    return cp_extra(ScalarOps, cp_constants(spec, outside), s, b, t, p.sequence_parallel, p.cp, CP_COMMS.index(p.cp_comm),
                    full - recomputed, 1 if recomputed else 0, full - recomputed)


# conditioning embedders every model chunk runs (models/dit.EVERY_STAGE); the other "embed.*" terms live on
# the first chunk of the first stage, "final.*" and "loss.*" on the last chunk of the last stage
EVERY_CHUNK = ("embed.t_embedder", "embed.class_labels", "embed.t_block", "embed.text_proj")


def placement(name: str) -> str:
    """Where a shared / outside term lives under pipeline parallelism: "every" chunk, "first" or "last"."""
    if name.startswith("embed.") and name not in EVERY_CHUNK:
        return "first"
    if name.startswith(("final.", "loss.")):
        return "last"
    return "every"


def stage_activations(spec: Spec, stage: int | None = None) -> dict[str, float]:
    """Activation bytes of one pipeline stage with all its in-flight micro-batches: `stage` (0-based), or
    the most loaded of the first and the last (None; the stages between hold less than the first).

    Args:
        spec: the validated spec.
        stage: the pipeline rank, or None.
    Returns:
        per_layer, per_microbatch (one micro-batch through the whole stage, every outside term),
        in_flight_microbatches (stage micro-batches in flight at the peak: chunk micro-batches / vpp),
        interleave_factor (1.0: folded into the in-flight count), recompute_working, total.
    """
    p, m = spec.parallel, spec.model
    s, b, t, d = _layout(spec)
    per_stage = m.depth // p.pp
    terms = [layer_terms(spec, i) for i in range(per_stage)]
    full = [sum(_cost(x, s, b, t, d) for x in layer.values()) for layer in terms]
    freed = [sum(_cost(x, s, b, t, d) for name, x in layer.items() if name.endswith(SELECTIVE)) for layer in terms]
    if p.recompute == "full":
        n = p.recompute_layers if p.recompute_layers is not None else per_stage
        kept_input = _cost(layer_input_term(spec), s, b, t, d)
        per_mb_layers = sum(full[n:]) + n * kept_input
        # one layer rebuilt during its backward; its input is the checkpoint's (kept already)
        working = max(full[:n], default=kept_input) - kept_input
    elif p.recompute == "selective":
        per_mb_layers = sum(x - y for x, y in zip(full, freed))
        working = max(freed, default=0.0)
    else:
        per_mb_layers, working = sum(full), 0.0
    shared = {name: _cost(x, s, b, t, d) for name, x in shared_terms(spec).items()}
    per_mb = per_mb_layers + sum(shared.values())
    cp_saved, cp_working = _cp_extra(spec, per_stage)
    per_mb += cp_saved
    working += cp_working
    out = {"per_layer": full[0] if full else 0.0, "per_microbatch": per_mb, "recompute_working": working}
    every = sum(v for name, v in shared.items() if placement(name) == "every")
    first = sum(v for name, v in shared.items() if placement(name) == "first")
    last = sum(v for name, v in shared.items() if placement(name) == "last")
    if p.pp == 1:
        # the final layer's and the loss's tensors are released before any layer is rebuilt
        total = max(per_mb, per_mb - last + working)
        return {**out, "in_flight_microbatches": 1.0, "interleave_factor": 1.0, "total": total}
    # 1F1B / interleaved 1F1B (`pp_schedule`): chunk micro-batches in flight at the peaks, each with 1/vpp
    # of the stage's layers and its own conditioning; the first (last) stage's special chunk adds the
    # patch input (the final layer and the loss) to each of its own micro-batches
    from .pp_schedule import peak_in_flight

    def at(r: int) -> tuple[float, float]:
        k, special, k_b, special_b = peak_in_flight(p.pp, p.vpp, p.microbatches, r)
        extra = first if r == 0 else (last if r == p.pp - 1 else 0.0)
        base = (per_mb_layers + cp_saved) / p.vpp + every
        return max(base * k + extra * special, base * k_b + extra * special_b + working), k / p.vpp

    total, in_flight = max(at(0), at(p.pp - 1)) if stage is None else at(stage)
    return {**out, "in_flight_microbatches": in_flight, "interleave_factor": 1.0, "total": total}
