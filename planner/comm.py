"""Communication per rank, predicted from the Spec: bytes by collective kind and process group for one
micro-batch's forward and backward on one rank (pp = 1), the same table `soraplan validate` measures by
wrapping torch.distributed (`soraplan.validation.comm_count`).

Bytes per call are what the rank contributes (all_reduce, isend: the tensor; all_gather_into_tensor: its
input shard; reduce_scatter_tensor and all_to_all_single: their whole input) or receives (irecv).
Notation: s = S/cp tokens per CP rank, b micro-batch, h hidden, B activation bytes, t tp, c cp, L layers,
X = s·b·h·B (one [s, b, h] tensor), k = s·b·(h/t)·B (one of q, k, v on this rank), sub = sub-blocks per
layer (self-attention, cross-attention, MLP).

TP group (t > 1)
  with SP  all_gather_into_tensor: per sub-block the column input forward, its re-gather for the weight
           gradient and the row output's gradient backward (3, + 1 forward again with full recompute) of
           X/t each, + the final layer's gather and the scatter's backward (2 X/t);
           reduce_scatter_tensor: per sub-block the row output forward and the column input gradient
           backward (2, + 1 with full recompute) of X each;
           all_reduce: the adaLN modulation's gradient [b, 6h] per layer (copy to the TP region) and
           the text K/V projection's input gradient [T, b, h] per layer (replicated input)
  without  all_reduce: per sub-block the row output forward and the column input gradient backward (2,
           + 1 with full recompute) of X, + the text K/V input gradient per layer
CP group (c > 1), per layer whose self-attention crosses CP ranks (p2p / all-gather: full attention; a2a:
every layer); the exchange runs again in a recomputed forward (full recompute, or selective: the core)
  p2p         isend = irecv: forward (c-1) K/V chunks (2k), backward (c-1) K/V and c dK/dV chunks
  all-gather  all_gather_into_tensor 2k (K and V), backward reduce_scatter_tensor 2ck
  a2a         all_to_all_single: q, k, v and the output, forward and backward: 8k
  every variant: the final layer's all_gather_into_tensor X and its gradient's reduce_scatter_tensor c X
"""

from __future__ import annotations

from .spec import Spec


def comm_bytes(spec: Spec) -> dict[str, int]:
    """{"<kind> <group>": bytes} for one micro-batch's forward + backward on one rank (pp = 1; ranks of a
    layout move the same bytes).

    Args:
        spec: the validated spec.
    Returns:
        Bytes per kind and group, zero entries left out.
    """
    if spec.model.extended:   # the current block vocabulary: planner/comm_blocks.py
        from .comm_blocks import comm_blocks

        return comm_blocks(spec)
    m, p, v = spec.model, spec.parallel, spec.video
    t, c, b, h, B = p.tp, p.cp, p.micro_batch, m.hidden, spec.kernels.act_bytes
    s = spec.seq_len // c
    L = m.layers // p.pp
    X = s * b * h * B
    k = s * b * (h // t) * B
    sub = 3 if m.cross_attn else 2
    full = p.recompute == "full"
    n_full = (L if p.recompute_layers is None else p.recompute_layers) if full else 0
    out: dict[str, int] = {}

    def add(key: str, n: float) -> None:
        if n:
            out[key] = out.get(key, 0) + int(n)

    if t > 1:
        text = L * v.text_tokens * b * h * B if m.cross_attn else 0
        if p.sequence_parallel:
            add("all_gather_into_tensor TP", (L * sub * 3 + n_full * sub + 2) * X // t)
            add("reduce_scatter_tensor TP", (L * sub * 2 + n_full * sub) * X)
            adaln = L * 6 * h * b * B if m.adaln != "none" else 0
            add("all_reduce TP", adaln + text)
        else:
            add("all_reduce TP", (L * sub * 2 + n_full * sub) * X + text)
    if c > 1:
        crossing = L if (p.cp_comm == "a2a" or m.attention_kind == "full") else 0
        rerun = crossing if p.recompute == "selective" else min(crossing, n_full)
        if p.cp_comm == "p2p":
            sends = crossing * ((c - 1) * 2 * k + (c - 1) * 2 * k + c * 2 * k) + rerun * (c - 1) * 2 * k
            add("isend CP", sends)
            add("irecv CP", sends)
        elif p.cp_comm == "all-gather":
            add("all_gather_into_tensor CP", (crossing + rerun) * 2 * k)
            add("reduce_scatter_tensor CP", crossing * 2 * c * k)
        else:
            add("all_to_all_single CP", (crossing * 8 + rerun * 4) * k)
        add("all_gather_into_tensor CP", X)
        add("reduce_scatter_tensor CP", c * X)
    return dict(sorted(out.items()))
