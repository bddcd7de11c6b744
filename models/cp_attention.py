"""Context-parallel attention cores: ring attention (`parallel.cp_comm p2p`) and Ulysses (`a2a`).

Each CP rank holds a contiguous chunk of s = S/cp tokens (models/dit.py takes chunk `cp_rank` of the
embedded sequence). The all-gather variant lives in models/attention.py (K/V gathered, then one SDPA).

Ring attention (`RingAttention`, an autograd Function): the local K/V chunk travels around the CP ring; at
step i rank r holds the chunk of rank (r - i) mod cp and attends its queries to it while the next chunk is
in flight (isend/irecv), merging the partial results with their logsumexp (online softmax):
    lse = logaddexp(lse_a, lse_b);  out = out_a exp(lse_a - lse) + out_b exp(lse_b - lse)
It saves what flash attention saves for the local tokens (q, k, v, the output and the fp32 logsumexp).
Backward passes K/V around the ring again with the accumulated dK/dV of each chunk travelling along; the
accumulated gradient returns to its owner after the last step (cp sends of dK/dV, cp-1 of K/V). The chunk
math is exact attention in fp32 (scores of one chunk pair at a time; nothing of it is saved).

Ulysses (`seq_to_heads` / `heads_to_seq`): an all-to-all turns [s, b, n, d] (local tokens, all heads of
this TP rank) into [S, b, n/cp, d] (all tokens, a cp-th of the heads), the ordinary core runs on the whole
sequence (so every attention pattern works), and the reverse all-to-all brings the output back.
Each all-to-all's backward is the reverse all-to-all.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _cp_group():
    from megatron.core import parallel_state as ps

    return ps.get_context_parallel_group()


def _ring_exchange(send: torch.Tensor, group) -> torch.Tensor:
    """Send `send` to the next CP rank, receive the previous rank's tensor of the same shape (isend/irecv,
    even ranks sending first and odd ranks receiving first, as Megatron's P2P does, so no ring deadlocks)."""
    size, rank = dist.get_world_size(group), dist.get_rank(group)
    nxt = dist.get_global_rank(group, (rank + 1) % size)
    prv = dist.get_global_rank(group, (rank - 1) % size)
    send = send.contiguous()
    recv = torch.empty_like(send)
    if rank % 2 == 0:
        reqs = [dist.isend(send, nxt, group=group), dist.irecv(recv, prv, group=group)]
    else:
        reqs = [dist.irecv(recv, prv, group=group), dist.isend(send, nxt, group=group)]
    for req in reqs:
        req.wait()
    return recv


def _chunk_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):
    """Exact attention of q [b, n, sq, d] to one K/V chunk [b, n, sk, d] in fp32: (out, logsumexp)."""
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale       # [b, n, sq, sk]
    lse = torch.logsumexp(scores, dim=-1)                                       # [b, n, sq]
    out = torch.matmul(torch.exp(scores - lse[..., None]), v.float())           # [b, n, sq, d]
    return out, lse


class RingAttention(torch.autograd.Function):
    """Ring attention over the CP group: q, k, v [s, b, n, d] (local tokens) -> out [s, b, n, d]."""

    @staticmethod
    def forward(ctx, q, k, v, scale):
        group = _cp_group()
        cp = dist.get_world_size(group)
        qh, kh, vh = (x.permute(1, 2, 0, 3) for x in (q, k, v))                 # [b, n, s, d] views
        kv = torch.stack([kh, vh])                                              # [2, b, n, s, d] (in flight)
        out = lse = None
        for i in range(cp):
            nxt = _ring_exchange(kv, group) if i < cp - 1 else None
            o_i, lse_i = _chunk_forward(qh, kv[0], kv[1], scale)
            if out is None:
                out, lse = o_i, lse_i
            else:
                new = torch.logaddexp(lse, lse_i)
                out = out * torch.exp(lse - new)[..., None] + o_i * torch.exp(lse_i - new)[..., None]
                lse = new
            if nxt is not None:
                kv = nxt
        o = out.to(q.dtype).permute(2, 0, 1, 3).contiguous()                    # [s, b, n, d]
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.scale = scale
        return o

    @staticmethod
    def backward(ctx, dout):
        q, k, v, o, lse = ctx.saved_tensors
        scale = ctx.scale
        group = _cp_group()
        cp = dist.get_world_size(group)
        qh = q.permute(1, 2, 0, 3).float()                                      # [b, n, s, d]
        do = dout.permute(1, 2, 0, 3).float()
        delta = (do * o.permute(1, 2, 0, 3).float()).sum(-1)                    # [b, n, s]
        kv = torch.stack([k.permute(1, 2, 0, 3), v.permute(1, 2, 0, 3)])       # [2, b, n, s, d]
        dq = torch.zeros_like(qh)
        acc = None                                                              # dK/dV of the chunk in hand
        for i in range(cp):
            nxt = _ring_exchange(kv, group) if i < cp - 1 else None
            kc, vc = kv[0].float(), kv[1].float()
            p = torch.exp(torch.matmul(qh, kc.transpose(-1, -2)) * scale - lse[..., None])   # [b, n, s, sk]
            dv = torch.matmul(p.transpose(-1, -2), do)
            dp = torch.matmul(do, vc.transpose(-1, -2))
            ds = p * (dp - delta[..., None])
            dq += torch.matmul(ds, kc) * scale
            dk = torch.matmul(ds.transpose(-1, -2), qh) * scale
            contrib = torch.stack([dk, dv]).to(k.dtype)
            acc = contrib if acc is None else acc + contrib
            acc = _ring_exchange(acc, group)        # travels with its chunk; after the last step: home
            if nxt is not None:
                kv = nxt
        dk, dv = acc[0].permute(2, 0, 1, 3), acc[1].permute(2, 0, 1, 3)        # [s, b, n, d]
        return dq.to(q.dtype).permute(2, 0, 1, 3), dk, dv, None


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q, k, v [s, b, n, d] -> [s, b, n*d], softmax scale 1/sqrt(d) (SDPA's default)."""
    s, b, n, d = q.shape
    return RingAttention.apply(q, k, v, d ** -0.5).view(s, b, n * d)


def _all_to_all(x: torch.Tensor, group) -> torch.Tensor:
    """all_to_all_single over dim 0 (one slice per CP rank)."""
    x = x.contiguous()
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


class _SeqToHeads(torch.autograd.Function):
    """[s, b, n, d] -> [S, b, n/cp, d]; backward: the reverse."""

    @staticmethod
    def forward(ctx, x):
        group = _cp_group()
        cp = dist.get_world_size(group)
        s, b, n, d = x.shape
        send = x.view(s, b, cp, n // cp, d).permute(2, 0, 1, 3, 4)              # [cp (head group), s, b, n/cp, d]
        return _all_to_all(send, group).view(cp * s, b, n // cp, d)            # [cp (source chunk) * s, ...]

    @staticmethod
    def backward(ctx, g):
        return _HeadsToSeq.apply(g)


class _HeadsToSeq(torch.autograd.Function):
    """[S, b, n/cp, d] -> [s, b, n, d]; backward: the reverse."""

    @staticmethod
    def forward(ctx, y):
        group = _cp_group()
        cp = dist.get_world_size(group)
        S, b, nc, d = y.shape
        got = _all_to_all(y.view(cp, S // cp, b, nc, d), group)                 # [cp (head group), s, b, n/cp, d]
        return got.permute(1, 2, 0, 3, 4).contiguous().view(S // cp, b, cp * nc, d)

    @staticmethod
    def backward(ctx, g):
        return _SeqToHeads.apply(g)


def seq_to_heads(x: torch.Tensor) -> torch.Tensor:
    """Ulysses: local tokens, all heads [s, b, n, d] -> all tokens, heads/cp [S, b, n/cp, d]."""
    return _SeqToHeads.apply(x)


def heads_to_seq(y: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Ulysses back: [S, b, (n/cp)*d] -> [s, b, n*d]."""
    S, b, hp = y.shape
    out = _HeadsToSeq.apply(y.reshape(S, b, hp // head_dim, head_dim))         # [s, b, n, d]
    return out.view(out.shape[0], b, -1)
