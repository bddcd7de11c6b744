"""Activation memory: the bytes of tensors saved for backward, op by op, per GPU.

Every term is one tensor that autograd keeps between forward and backward in the model that
`soraplan.models` builds (issue C measures them with saved_tensors_hooks, de-duplicated by storage).
Notation per micro-batch on one GPU: s = tokens per CP rank, b = micro-batch, h = hidden, f = FFN hidden,
a = heads, T = text tokens, t = TP size, d = t with sequence parallel else 1 (the divisor of tensors
outside the TP regions), B = activation bytes, m = dropout-mask bytes (1 on GPU, B with CPU semantics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .flops import attention_keys
from .spec import Spec

FP32 = 4


@dataclass(frozen=True)
class LayerActivations:
    terms: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(sum(self.terms.values()))


def _dims(spec: Spec):
    p, m, k = spec.parallel, spec.model, spec.kernels
    s = spec.seq_len // p.cp
    b, h, f, a, t = p.micro_batch, m.hidden, m.ffn, m.heads, p.tp
    d = t if p.sequence_parallel else 1
    B = k.act_bytes
    mask = B if k.cpu_semantics else 1
    return s, b, h, f, a, t, d, B, mask


def layer_activations(spec: Spec, layer: int = 0) -> LayerActivations:
    """Saved bytes of one transformer layer for one micro-batch on one GPU (no recompute)."""
    s, b, h, f, a, t, d, B, mask = _dims(spec)
    m, k = spec.model, spec.kernels
    drop = k.dropout > 0
    sbh = s * b * h
    ln_stats = 2 * s * b * FP32            # LayerNorm mean + rstd (fp32) per token
    modulated = m.adaln != "none"
    K = attention_keys(spec, layer)
    if m.attention_kind == "full":
        K = K // spec.parallel.cp * spec.parallel.cp  # full attention: a CP rank's queries see all keys
    T = spec.video.text_tokens
    terms: dict[str, float] = {}

    def attn_core(prefix: str, q_len: int, k_len: int) -> None:
        # q, k, v are saved by the attention op; flash adds out + logsumexp, unfused the probabilities.
        if k.attention_kernel == "flash":
            terms[f"{prefix}.core_out"] = q_len * b * h * B / t
            terms[f"{prefix}.core_lse"] = b * (a // t) * q_len * FP32
        else:
            scores = b * (a // t) * q_len * k_len
            terms[f"{prefix}.softmax_out"] = scores * B
            if drop:
                terms[f"{prefix}.attn_dropout_mask"] = scores * mask
                terms[f"{prefix}.attn_dropped_probs"] = scores * B

    # --- self-attention ---------------------------------------------------------------------------
    terms["norm1.input"] = sbh * B / d
    terms["norm1.stats"] = ln_stats / d
    if modulated:
        terms["modulate1.x_norm"] = sbh * B / d           # x_norm kept for d(scale)
    terms["self_attn.qkv_input"] = sbh * B / d            # SP: the sharded input is kept, re-gathered in bwd
    terms["self_attn.qkv"] = 3 * sbh * B / t
    attn_core("self_attn", s, K)
    terms["self_attn.proj_input"] = sbh * B / t
    if drop:
        terms["self_attn.dropout_mask"] = sbh * mask / d
    if modulated:
        terms["gate1.attn_out"] = sbh * B / d              # kept for d(gate)
    # --- cross-attention (PixArt: no norm, no gate) -------------------------------------------------
    if m.cross_attn:
        terms["cross_attn.q_input"] = sbh * B / d
        terms["cross_attn.q"] = sbh * B / t
        terms["cross_attn.kv"] = 2 * T * b * h * B / t
        attn_core("cross_attn", s, T)
        terms["cross_attn.proj_input"] = sbh * B / t
        if drop:
            terms["cross_attn.dropout_mask"] = sbh * mask / d
    # --- MLP --------------------------------------------------------------------------------------
    terms["norm2.input"] = sbh * B / d
    terms["norm2.stats"] = ln_stats / d
    if modulated:
        terms["modulate2.x_norm"] = sbh * B / d
    terms["mlp.fc1_input"] = sbh * B / d
    terms["mlp.gelu_input"] = s * b * f * B / t
    terms["mlp.fc2_input"] = s * b * f * B / t
    if drop:
        terms["mlp.dropout_mask"] = sbh * mask / d
    if modulated:
        terms["gate2.mlp_out"] = sbh * B / d
    return LayerActivations(terms)


def layer_input_bytes(spec: Spec) -> float:
    """What full recompute keeps per layer: its input."""
    s, b, h, f, a, t, d, B, mask = _dims(spec)
    return s * b * h * B / d


def selective_saving(spec: Spec, la: LayerActivations) -> float:
    """Bytes selective recompute (core attention) frees per layer."""
    return sum(v for key, v in la.terms.items()
               if key.endswith(("softmax_out", "attn_dropout_mask", "attn_dropped_probs", "core_out", "core_lse")))


def shared_activations(spec: Spec) -> float:
    """Tensors saved once per micro-batch and shared by every layer (the projected text states)."""
    s, b, h, f, a, t, d, B, mask = _dims(spec)
    if not spec.model.cross_attn:
        return 0.0
    return spec.video.text_tokens * b * h * B   # linear_kv's input in every layer is the same storage


def stage_activations(spec: Spec) -> dict[str, float]:
    """Activation bytes of the most loaded pipeline stage (the first), all in-flight micro-batches."""
    p, m = spec.parallel, spec.model
    per_stage = m.layers // p.pp
    layers = [layer_activations(spec, i) for i in range(per_stage)]
    per_mb_layers = sum(x.total for x in layers)
    if p.recompute == "full":
        n = p.recompute_layers if p.recompute_layers is not None else per_stage
        kept = sum(x.total for x in layers[n:])
        per_mb_layers = kept + n * layer_input_bytes(spec)
        working = max((x.total for x in layers[:n]), default=0.0)   # one layer rebuilt during backward
    elif p.recompute == "selective":
        per_mb_layers = sum(x.total - selective_saving(spec, x) for x in layers)
        working = max((selective_saving(spec, x) for x in layers), default=0.0)
    else:
        working = 0.0
    per_mb = per_mb_layers + shared_activations(spec)
    # 1F1B: the first stage holds pp micro-batches in flight (fewer if there are fewer micro-batches);
    # interleaving adds (pp-1)/(pp*vpp) of a stage (Korthikanti et al. 2022).
    in_flight = min(p.microbatches, p.pp)
    interleave = 1 + (p.pp - 1) / (p.pp * p.vpp) if p.vpp > 1 else 1.0
    return {
        "per_layer": layers[0].total if layers else 0.0,
        "per_microbatch": per_mb,
        "in_flight_microbatches": float(in_flight),
        "interleave_factor": interleave,
        "recompute_working": working,
        "total": per_mb * in_flight * interleave + working,
    }
