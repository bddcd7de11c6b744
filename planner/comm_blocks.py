"""Communication per rank of the current block vocabulary (models/blocks.py), predicted from the Spec: bytes by
collective kind and process group for one micro-batch's forward and backward on one rank (pp = 1), the table
`soraplan validate` measures by wrapping torch.distributed (validation/comm_count.py). planner/comm.py
dispatches here for `Model.extended`.

Bytes per call as comm_count counts them: what the rank contributes (all_reduce, isend, all_to_all_single: the
tensor; all_gather_into_tensor: its input shard; reduce_scatter_tensor: its whole input) or receives (irecv).
Notation: t tp, c cp, b micro-batch, B activation bytes, n the tokens a projection sees on this CP rank
(standard blocks: the sequence's S'/c, video S/c plus text T/c for `in-sequence`; MMDiT: S/c for the video
stream, T/c for the text stream; single-stream blocks: all tokens per CP rank), w its width (h, or Mochi's
h_y for the text stream).

TP group (t > 1), per projection:
  without SP  column (input replicated over TP): all_reduce of its input gradient, n b w B;
              row: all_reduce of its output, n b w B
  with SP     column: all_gather_into_tensor of the input shard forward and again for the weight gradient
              (2 n/t b w B), reduce_scatter_tensor of the input gradient (n b w B); row: reduce_scatter_tensor
              of the output (n b w B), all_gather_into_tensor of its gradient (n/t b w B); every adaLN
              modulation [b, k h] passes copy_to_tensor_model_parallel_region: all_reduce of its gradient;
              the scatter before the blocks and the gather before the final layer: all_gather_into_tensor of
              a shard each (the scatter's in backward; an MMDiT scatters its text stream too)
  always      cross-attention's text K/V projection reads the replicated text: all_reduce of the text's
              gradient [T, b, h]; a language model's embedding all-reduces its output [S, b, h], its head
              all-gathers the logits [S, b, V/t] and all-reduces its input gradient [S, b, h]
Blocks: standard = qkv (column), proj (row), cross-attention q (column), kv (replicated), proj (row), fc1
(column), fc2 (row), modulation 6h (expert adaLN: 2 x 6h); MMDiT = the same per stream (Mochi: 4h / 4h_y
scale-gate modulation, the last block's text has qkv only and modulation h_y); single-stream = linear1
(column), linear2 (row), modulation 3h.
CP group (c > 1), per block (every block's self- or joint attention spans the CP ranks), k = s b (h/t) B for
the s = seq_len/c tokens a rank's attention holds (k_kv the same at the K/V width):
  p2p  isend = irecv: forward (c-1) K/V chunks (2k), backward (c-1) K/V and c dK/dV chunks
  a2a  all_to_all_single: q, k, v and the output, forward and backward: 2 (2k + 2 k_kv)
  and once: the final gather, all_gather_into_tensor of the rank's video tokens [S_out/c, b, h] and the
  reduce_scatter_tensor of its gradient [S_out, b, h] (S_out = S, or T + S with text in the sequence)
"""

from __future__ import annotations

from .spec import Spec


def comm_blocks(spec: Spec) -> dict[str, int]:
    """{"<kind> <group>": bytes} for one micro-batch's forward + backward on one rank (pp = 1).

    Args:
        spec: a validated spec with `model.extended`.
    Returns:
        Bytes per kind and group, zero entries left out.
    """
    m, p, v = spec.model, spec.parallel, spec.video
    t, c, b, h, B = p.tp, p.cp, p.micro_batch, m.hidden, spec.kernels.act_bytes
    sp = p.sequence_parallel and t > 1
    T, S = (v.text_tokens, v.seq_len) if m.text_mode != "none" else (0, spec.seq_len)
    hy = m.text_hidden or h
    out: dict[str, int] = {}

    def add(key: str, n: float) -> None:
        if n:
            out[key] = out.get(key, 0) + int(n)

    def col(n: int, w: int) -> None:
        if t == 1:
            return
        if sp:
            add("all_gather_into_tensor TP", 2 * n // t * b * w * B)
            add("reduce_scatter_tensor TP", n * b * w * B)
        else:
            add("all_reduce TP", n * b * w * B)

    def row(n: int, w: int) -> None:
        if t == 1:
            return
        if sp:
            add("reduce_scatter_tensor TP", n * b * w * B)
            add("all_gather_into_tensor TP", n // t * b * w * B)
        else:
            add("all_reduce TP", n * b * w * B)

    def mod(width: int) -> None:
        if sp and m.adaln != "none":
            add("all_reduce TP", b * width * B)

    def shard(n: int, w: int) -> None:       # an SP scatter (backward) or gather (forward)
        if sp:
            add("all_gather_into_tensor TP", n // t * b * w * B)

    def attention(s: int) -> None:
        if c == 1:
            return
        k = s * b * (h // t) * B
        k_kv = s * b * (m.n_kv_heads * m.head_dim // t) * B
        if p.cp_comm == "p2p":
            sends = (c - 1) * 2 * k + (c - 1) * 2 * k + c * 2 * k
            add("isend CP", sends)
            add("irecv CP", sends)
        elif p.cp_comm == "a2a":
            add("all_to_all_single CP", 2 * (2 * k + 2 * k_kv))
        else:
            add("all_gather_into_tensor CP", 2 * k_kv)
            add("reduce_scatter_tensor CP", 2 * c * k_kv)

    seq = spec.seq_len // c                      # tokens per CP rank of the attention's sequence
    if m.text_mode == "mmdit":
        nv, nt = S // c, T // c
        asym = m.text_hidden is not None
        for i in range(m.layers):
            last = i == m.layers - 1
            for n, w, update in ((nv, h, True), (nt, hy, not (asym and last))):
                col(n, w)                        # qkv
                if update:
                    row(n, w)                    # proj
                    col(n, w)                    # fc1
                    row(n, w)                    # fc2
            mod(4 * h if asym else 6 * h)
            mod((hy if last else 4 * hy) if asym else 6 * h)
            attention(seq)
        shard(nv, h)
        shard(nt, hy)
    else:
        n = seq
        for _ in range(m.layers):
            col(n, h)
            row(n, h)
            if m.cross_attn:
                col(n, h)
                if t > 1:
                    add("all_reduce TP", T * b * h * B)     # the text K/V projection's input gradient
                row(n, h)
            col(n, h)
            row(n, h)
            mod(12 * h if m.adaln == "expert" else 6 * h)
            attention(seq)
        shard(n, h)
    for _ in range(m.single_layers):
        col(seq, h)
        row(seq, h)
        mod(3 * h)
        attention(seq)
    n_out = (S // c if m.text_mode == "mmdit" else seq)      # the tokens gathered before the final layer
    shard(n_out, h)
    if m.vocab_size and t > 1:
        add("all_reduce TP", spec.seq_len * b * h * B)                  # embedding output
        if not m.tied_embeddings:
            add("all_gather_into_tensor TP", spec.seq_len * b * (m.vocab_size // t) * B)   # logits
            add("all_reduce TP", spec.seq_len * b * h * B)              # the head's input gradient
    if c > 1:
        add("all_gather_into_tensor CP", n_out * b * h * B)
        add("reduce_scatter_tensor CP", c * n_out * b * h * B)
    return dict(sorted(out.items()))
