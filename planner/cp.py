"""Context parallelism: what each way of exchanging K/V adds to a CP rank's activation memory.

The per-layer activation terms (`activations.layer_terms`) are written for the s = S/cp tokens a CP rank
holds. What CP adds on top depends on how the attention sees the other ranks' keys (`parallel.cp_comm`):

  p2p         ring attention: K/V chunks of s tokens passed around the CP ring, each chunk's attention
              merged with an online softmax. Saved: q, k, v, out and the logsumexp of the local tokens,
              exactly the s-token terms. Transient: the chunk in hand and the one arriving, and in backward
              the same for dK/dV: 4 chunks of K/V (2 s h B / t each) at the peak.
  all-gather  K/V all-gathered over the CP group before the core: the core keeps the gathered K and V
              (new storages of S tokens; the local ones stay in the qkv output, which q is a view of), in
              every layer whose attention is not recomputed
              (selective and full recompute rebuild them: one layer's worth while it runs backward).
              Transient: the gathered dK/dV before their reduce-scatter.
  a2a         Ulysses: all-to-all from sequence shards to head shards (heads/(t cp) heads, all S tokens) and
              back: the core keeps q, k, v and its output in the head layout (the same bytes as s tokens x
              all heads), and linear_proj the output back in the sequence layout: one more [s, h/t] tensor
              per full-attention layer (regrouped attention copies it back anyway). Transient: the
              all-to-all buffers of q, k, v (send and receive).

For every variant the model embeds the whole sequence before taking its chunk and gathers the hidden states
before the final layer (the loss runs on the whole sequence on every CP rank), so `outside_terms`' per-token
tensors cover S tokens, not s, and without sequence parallelism the first layer's input is a view of the
whole embedded sequence (its storage holds S tokens; not for an MMDiT of the current blocks, whose rank
input concatenates its chunk of the text and of the video: a new tensor of s tokens).

Text under CP (models/blocks.py): text in the sequence is part of the sequence ([text; video] split into cp
chunks, the text on the first rank(s)); an MMDiT splits its text and its video stream into cp chunks each, so
every rank holds T/cp text and S/cp video tokens (s = (T + S)/cp, the planner's seq_len / cp) and exchanges
the K/V of both; cross-attention text stays whole on every rank (no CP exchange).

`cp_extra` is one formula for Python scalars (`activations.stage_activations`) and numpy arrays
(`search.Space`); comm and recompute are indices into CP_COMMS and ("none", "selective", "full").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .spec import Spec

CP_COMMS = ("p2p", "all-gather", "a2a")
P2P, ALL_GATHER, A2A = range(3)


@dataclass(frozen=True)
class CpConstants:
    """Per-token bytes that `cp_extra` scales by the layout (model, video and kernels only)."""

    kv_per_token: float         # K and V of one token, all heads: 2 h B
    out_per_token: float        # the attention output of one token: h B
    outside_per_token: float    # the per-token bytes of the tensors saved outside the layers
    input_per_token: float      # the first layer's input: h B


def cp_constants(spec: Spec, outside_per_token: float) -> CpConstants:
    """The constants of `cp_extra` for this spec; `outside_per_token`: the per-token bytes of
    `activations.outside_terms` (summed by the caller: the activation model imports this module)."""
    h, B = spec.model.hidden, spec.kernels.act_bytes
    # an MMDiT (models/blocks.py) concatenates its streams' chunks: the first block's input is a new tensor
    first_input = 0 if spec.model.extended and spec.model.text_mode == "mmdit" else h * B
    return CpConstants(2 * h * B, h * B, outside_per_token, first_input)


def cp_extra(xp: Any, c: CpConstants, s: Any, b: Any, tp: Any, sp: Any, cp: Any, comm: Any,
             kept_layers: Any, rebuilt: Any, full_layers: Any) -> tuple[Any, Any]:
    """Saved bytes of one micro-batch that CP adds on the first pipeline stage, and transient bytes.

    Args:
        xp: numpy or ScalarOps.
        c: cp_constants(spec).
        s: tokens per CP rank; b: samples per micro-batch; tp: tensor-parallel size; sp: sequence parallel
            (bool); cp: context-parallel size; comm: index into CP_COMMS.
        kept_layers: layers of the stage whose attention core keeps its saved tensors (no recompute: all
            layers whose attention spans CP ranks; selective: 0; full: those not recomputed).
        rebuilt: 1 if some such layer is recomputed (its core's tensors exist while it runs backward).
        full_layers: of kept_layers, those with full attention (a2a: one more output tensor each).
    Returns:
        (saved bytes per micro-batch, transient bytes at the peak).
    """
    on = xp.where(cp > 1, 1.0, 0.0)
    others = s * (cp - 1) * b                                   # tokens of the other CP ranks, per micro-batch
    outside = others * c.outside_per_token
    chunk_view = xp.where(sp, 0.0, others * c.input_per_token)
    kv_local = b * s * c.kv_per_token / tp
    kv_gathered = b * s * cp * c.kv_per_token / tp               # a new [S, b, h/t] storage each for K and V
    saved = outside + chunk_view
    saved = saved + xp.where(comm == ALL_GATHER, kept_layers * kv_gathered, 0.0)
    saved = saved + xp.where(comm == A2A, full_layers * b * s * c.out_per_token / tp, 0.0)
    working = xp.where(comm == P2P, 4 * kv_local,
                       xp.where(comm == ALL_GATHER, kv_gathered + rebuilt * kv_gathered,
                                3 * kv_local))
    return saved * on, working * on


def cp_refusal(attention_kind: str, kernel: str, dropout: float, heads: int, tp: int, cp: int,
               comm: str) -> str | None:
    """Why the model cannot train this context-parallel combination (one line naming it), or None.

    The one rule the search (never proposes it), `soraplan launch` (refuses before submitting) and the model
    (refuses at build) share:
      * CP runs the flash (SDPA) kernel: Megatron's unfused DotProductAttention refuses cp > 1;
      * p2p and all-gather split the sequence into contiguous chunks: full attention only (window and
        spatial-temporal groups cross the chunks); a2a gives every rank the whole sequence for heads/(tp*cp)
        heads, so every attention pattern runs, with heads % (tp*cp) == 0;
      * p2p merges chunk results with their logsumexp: no attention dropout.
    """
    if cp <= 1:
        return None
    if kernel != "flash":
        return f"parallel.cp: context parallelism (cp={cp}) runs the flash (SDPA) kernel only, not attention_kernel {kernel}"
    if comm == "a2a":
        if heads % (tp * cp):
            return f"parallel.cp_comm a2a: heads ({heads}) % (tp*cp = {tp * cp}) != 0"
        return None
    if attention_kind != "full":
        return (f"parallel.cp_comm {comm}: {attention_kind} attention under context parallelism (cp={cp}) "
                f"needs cp_comm a2a")
    if comm == "p2p" and dropout > 0:
        return f"parallel.cp_comm p2p: attention dropout ({dropout}) under ring attention is not supported; use all-gather or a2a"
    return None


def spec_cp_refusal(spec: Spec) -> str | None:
    """`cp_refusal` for a Spec."""
    m, p = spec.model, spec.parallel
    return cp_refusal(m.attention_kind, spec.kernels.attention_kernel, spec.kernels.dropout, m.heads, p.tp, p.cp,
                      p.cp_comm)


def cp_outside_bytes(spec: Spec, outside_per_token: float) -> float:
    """Of `cp_extra`'s saved bytes, those outside the transformer layers: the outside tensors' other
    (cp-1) s tokens per micro-batch (0 at cp = 1)."""
    p = spec.parallel
    if p.cp <= 1:
        return 0.0
    s = spec.seq_len // p.cp
    return p.micro_batch * s * (p.cp - 1) * cp_constants(spec, outside_per_token).outside_per_token
