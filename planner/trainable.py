"""What `soraplan train` can run: one rule shared by the layout search (it never proposes a layout the
trainer refuses), `soraplan launch` (exit 2 before submitting), `soraplan train` and the model (refusal at start).

The planner plans every valid Spec analytically; the Megatron-core model builds a subset. A Spec is refused,
with one line naming the combination, when
  * its context-parallel combination is one the model cannot run (`cp.cp_refusal`: the kernel, the
    attention pattern under p2p / all-gather, heads % (tp*cp) under a2a, attention dropout under p2p);
  * it interleaves pipeline stages (vpp > 1) with a micro-batch count that is not a multiple of pp
    (`interleave_refusal`: megatron's interleaved 1F1B runs micro-batches through each chunk in groups of pp);
  * the model is outside what the blocks build (`unsupported`): the current block vocabulary
    (`Model.extended`, models/blocks.py) trains with tensor (and sequence), pipeline (1F1B, vpp = 1; not a
    language model, not Mochi's narrower text stream), context (pp = 1, bidirectional attention; p2p without
    grouped K/V heads, a2a with kv_heads % (tp*cp) == 0) and data parallelism; an MMDiT's text and video
    streams are split each over cp x tp (SP); q/k norms over all heads at tp = 1 only; U-ViT is planned
    analytically.

`train_refusal(spec)` is the whole rule; `refused_layouts` is the vectorised form of the model part that the
search applies to arrays of layouts (the context-parallel and vpp parts are applied in `search.Space`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cp import cp_refusal
from .spec import Model, Spec


def layout_refusal(m: Model, tp: int, pp: int, vpp: int, cp: int, sequence_parallel: bool) -> str | None:
    """Why the model refuses model `m` at this layout (one line naming the combination), or None.

    Args:
        m: the model section of a Spec.
        tp, pp, vpp, cp: the parallel sizes.
        sequence_parallel: sequence parallelism on (it only acts at tp > 1).
    Returns:
        The refusal, or None when the trainer builds it.
    """
    if m.long_skip or m.tokens_in_sequence:
        return "model.long_skip: U-ViT layouts are planned analytically only"
    if m.text_mode in ("in-sequence", "mmdit") and m.causal:
        return "model.causal: causal attention is for language models (text 'none')"
    if m.adaln == "single" and (m.text_mode == "mmdit" or m.single_layers):
        return ("model.adaln: 'single' (a shared table) is built for the standard block only; MMDiT and "
                "single-stream blocks take --adaln per-block or none")
    if not m.extended:
        return None
    if vpp > 1:
        return (f"parallel.vpp: vpp={vpp} with the current block vocabulary: its pipeline stages run "
                "non-interleaved 1F1B (vpp=1)")
    if pp > 1 and m.vocab_size:
        return f"parallel.pp: pp={pp} for a language model: the pipeline schedule runs the diffusion loss; pp=1 only"
    if pp > 1 and m.text_mode == "mmdit" and m.text_hidden not in (None, m.hidden):
        return (f"parallel.pp: pp={pp} with a narrower text stream (text_hidden {m.text_hidden} < hidden "
                f"{m.hidden}): the stages carry [text; video] as one tensor; pp=1 only")
    if cp > 1 and pp > 1:
        return f"parallel.cp: cp={cp} with pp={pp} for the current block vocabulary: context parallelism at pp=1 only"
    if cp > 1 and m.causal:
        return f"parallel.cp: cp={cp} with causal attention: the CP attention cores are bidirectional; cp=1 only"
    if m.qk_norm != "none" and m.qk_norm_width == "all" and tp > 1:
        return f"parallel.tp: tp={tp} with q/k norms over all heads (qk_norm_width all): tp = 1 only"
    return None


def unsupported(spec: Spec) -> str | None:
    """Why `soraplan train` cannot run `spec` (one line naming the combination), or None.

    Args:
        spec: a validated Spec.
    Returns:
        The refusal, or None.
    """
    p, m = spec.parallel, spec.model
    why = layout_refusal(m, p.tp, p.pp, p.vpp, p.cp, p.sequence_parallel)
    if why is not None or not m.extended:
        return why
    shards = p.cp * (p.tp if p.sequence_parallel else 1)
    if m.text_mode == "mmdit" and shards > 1 and (spec.video.text_tokens % shards or spec.video.seq_len % shards):
        return (f"parallel.{'cp' if p.cp > 1 else 'sequence_parallel'}: MMDiT streams are split each over cp x "
                f"tp (SP) = {shards}: text tokens ({spec.video.text_tokens}) and video tokens ({spec.video.seq_len}) "
                "must divide")
    return model_cp_refusal(m, p.tp, p.cp, p.cp_comm)


def model_cp_refusal(m: Model, tp: int, cp: int, comm: str) -> str | None:
    """The current blocks' part of the context-parallel rule (the search applies it per (tp, cp, cp_comm)):
    all-gather is not offered (the blocks' local K/V are often new tensors that only the attention keeps,
    so the gathered copies replace them: the planner's all-gather memory terms are not exact for them);
    p2p ring attention needs as many K/V heads as query heads; a2a runs MMDiT stacks only (a standard
    block's rotated or normalised q, k are replaced by the head-layout copies, which the planner's a2a
    terms do not model) with kv_heads % (tp*cp) == 0.

    Args:
        m: the model section of a Spec.
        tp, cp: the parallel sizes.
        comm: parallel.cp_comm.
    Returns:
        The refusal line, or None.
    """
    if not m.extended or cp <= 1:
        return None
    if comm == "all-gather":
        return (f"parallel.cp_comm: all-gather at cp={cp} with the current block vocabulary: use p2p (or a2a for "
                "MMDiT); all-gather's saved bytes are not validated for these blocks")
    if comm == "p2p" and m.n_kv_heads != m.heads:
        return (f"parallel.cp_comm: p2p ring attention with grouped K/V heads ({m.n_kv_heads} of {m.heads}): "
                "use a2a (MMDiT) or cp=1")
    if comm == "a2a" and m.text_mode != "mmdit":
        return (f"parallel.cp_comm: a2a at cp={cp} with the current standard blocks (text {m.text_mode}): use "
                "p2p; a2a's saved bytes are validated for MMDiT stacks only")
    if comm == "a2a" and m.n_kv_heads % (tp * cp):
        return f"parallel.cp_comm: a2a needs kv_heads ({m.n_kv_heads}) % (tp*cp = {tp * cp}) == 0"
    return None


def refused_layouts(m: Model, tp: Any, pp: Any, vpp: Any, cp: Any, sequence_parallel: Any) -> np.ndarray:
    """Which layouts (parallel integer arrays) the trainer refuses for model `m`, as a boolean array. A model
    refused at every layout (planned analytically only, e.g. U-ViT) masks none: the search still plans it.

    Args:
        m: the model section of a Spec.
        tp, pp, vpp, cp, sequence_parallel: one entry per layout.
    Returns:
        True where `layout_refusal` refuses the layout.
    """
    cols = np.broadcast_arrays(*(np.asarray(a, dtype=np.int64) for a in (tp, pp, vpp, cp, sequence_parallel)))
    n = cols[0].size
    if n == 0 or layout_refusal(m, 1, 1, 1, 1, False) is not None:
        return np.zeros(n, dtype=bool)
    # the rule only looks at which sizes exceed 1 (and whether SP is on): one bit each, 32 patterns
    table = np.array([layout_refusal(m, 1 + (k & 1), 1 + (k >> 1 & 1), 1 + (k >> 2 & 1), 1 + (k >> 3 & 1),
                                     bool(k >> 4 & 1)) is not None for k in range(32)], dtype=bool)
    key = ((cols[0] > 1) * 1 + (cols[1] > 1) * 2 + (cols[2] > 1) * 4 + (cols[3] > 1) * 8
           + (cols[4] > 0) * 16).reshape(-1)
    return table[key]


VPP_REFUSAL = ("parallel.vpp: interleaved 1F1B (vpp={vpp}) runs the micro-batches through each model chunk in "
               "groups of pp: micro-batches per step ({m} = global_batch / (micro_batch*dp)) % pp ({pp}) != 0")


def interleave_refusal(pp: int, vpp: int, microbatches: int) -> str | None:
    """Megatron's interleaved schedule (vpp > 1): micro-batches go through each model chunk in groups of pp
    (`microbatch_group_size_per_vp_stage` = pp), so their count must be a multiple of pp (layers % (pp*vpp)
    is a rule of the Spec). The search applies the same test to arrays (`search.Space.reasons`).

    Args:
        pp, vpp: pipeline stages and model chunks per stage.
        microbatches: micro-batches per step on one data-parallel rank.
    Returns:
        The refusal line, or None.
    """
    if vpp > 1 and microbatches % pp:
        return VPP_REFUSAL.format(vpp=vpp, m=microbatches, pp=pp)
    return None


def parallel_refusal(spec: Spec) -> str | None:
    """The context-parallel and interleaving part of the rule (any model), or None.

    Args:
        spec: the validated spec.
    Returns:
        The refusal line, or None.
    """
    m, p, k = spec.model, spec.parallel, spec.kernels
    reason = cp_refusal(m.attention_kind, k.attention_kernel, k.dropout, m.heads, p.tp, p.cp, p.cp_comm)
    if reason:
        return reason
    return interleave_refusal(p.pp, p.vpp, p.microbatches)


def train_refusal(spec: Spec) -> str | None:
    """Why `soraplan train` cannot run this spec (one line naming the combination), or None.

    Args:
        spec: the validated spec.
    Returns:
        The refusal line, or None when the trainer runs it.
    """
    return parallel_refusal(spec) or unsupported(spec)


def layout_refused(spec: Spec) -> bool:
    """True when the trainer refuses this spec's layout while it would train the model at some layout (what
    the search rejects as `unsupported`; a model refused at every layout is still planned analytically)."""
    return parallel_refusal(spec) is not None or (
        unsupported(spec) is not None and layout_refusal(spec.model, 1, 1, 1, 1, False) is None)
