"""The current block vocabulary in Megatron-core: the model of every spec with `Model.extended`.

Built from the same Spec as planner/blocks.py, whose parameter groups it has exactly (top-level attribute
names = planner group names; `blocks` and `single_blocks` are ModuleLists). Block projections are Megatron
Column/RowParallelLinear (tensor and sequence parallel; a fused projection's sections are split
per TP rank, so every tp is the same network), the LM's token embedding is Megatron's
VocabParallelEmbedding; everything else is plain torch.

  standard   [norm1 -> (modulate) -> self-attention (GQA, q/k norm, RoPE, causal) -> (gate)] +
             [norm_cross -> cross-attention] + [norm2 -> (modulate) -> FFN (GELU / SwiGLU / GeGLU) -> (gate)];
             adaLN per-block (Linear(e, 6h)), single (table + shared t_block), expert (CogVideoX: one
             Linear(e, 6h) per norm, video and text halves), none; text in the sequence: [text; video]
  mmdit      the standard block twice (video and text weights) around one joint attention over [text; video]
  asymmetric Mochi: a text stream of width h_y (qkv h_y -> 3h, proj h -> h_y), scale/gate modulation, the
             last block leaves the text as it is
  single     fused parallel block: linear1 -> [q k v | mlp], linear2 [attention out | activated mlp] -> h
  LM         token embedding (+ learned positions) -> blocks -> final norm -> logits (tied or untied)

Sequence parallelism: the blocks run on S/tp tokens (sp_scatter before, sp_gather before the final layer);
an MMDiT's text stream is a shard too; docs/model.md describes the hand-over to the single-stream blocks.

Pipeline stages: CurrentDiT(spec, config, stage, stages) holds its share of the blocks (main stack, then the
single-stream blocks); an MMDiT carries [text; video] between stages as one tensor (docs/model.md).

Context parallelism: CoreAttention(config) exchanges K/V over the CP group (p2p ring, a2a Ulysses); a rank holds
chunk r of the sequence (an MMDiT: chunk r of each stream), the RoPE tables follow its token positions.

Limits (refused by build_model with one line, planner/trainable.py): interleaved stages, pipeline stages of a
language model or of Mochi's narrower text stream, context parallelism with pp > 1, causal attention,
all-gather, a2a outside MMDiT stacks or p2p with grouped K/V heads, and q/k norms over all heads with tp > 1.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from megatron.core import tensor_parallel

from .embed import TimestepEmbedder, sincos_3d
from .rope import apply_rope, learned_angles, rope_angles, rope_tables


def _tp(config) -> int:
    return config.tensor_model_parallel_size


def _sp(config) -> bool:
    """Sequence parallelism on: the hidden states between the TP regions are sequence shards."""
    return bool(config.sequence_parallel) and _tp(config) > 1


def tp_copy(x: torch.Tensor, config) -> torch.Tensor:
    """A per-sample tensor (adaLN modulation) that acts on a sequence shard under SP: identity forward,
    TP all-reduce of its gradient backward, so the layers and embedders behind it get whole gradients."""
    return tensor_parallel.copy_to_tensor_model_parallel_region(x) if _sp(config) else x


def replicated_input(linear):
    """A ColumnParallelLinear whose input is the same on every TP rank (the text for cross-attention K/V, the
    gathered hidden states of the LM head), never a sequence shard: no SP all-gather, input gradient
    all-reduced over TP instead."""
    linear.sequence_parallel = False
    linear.allreduce_dgrad = linear.tp_group is not None and linear.tp_group.size() > 1
    return linear


def sp_scatter(x: torch.Tensor, config) -> torch.Tensor:
    """[S, B, w] -> this TP rank's [S/tp, B, w] under SP (backward: all-gather), as a copy: a slice would keep
    the whole sequence's storage alive in the first block's saved tensors."""
    if not _sp(config):
        return x
    return tensor_parallel.scatter_to_sequence_parallel_region(x).clone()


def sp_gather(x: torch.Tensor, config) -> torch.Tensor:
    """[S/tp, B, w] -> [S, B, w] under SP; the layers after it run the same on every TP rank, so the gradient
    is split, not reduce-scattered."""
    if not _sp(config):
        return x
    return tensor_parallel.gather_from_sequence_parallel_region(x, tensor_parallel_output_grad=False)


def col(config, n_in: int, n_out: int, bias: bool):
    return tensor_parallel.ColumnParallelLinear(n_in, n_out, config=config, init_method=config.init_method,
                                                bias=bias, gather_output=False, skip_bias_add=False)


def interleave_sections(w: torch.Tensor, sections: tuple[int, ...], tp: int, dim: int = 0) -> torch.Tensor:
    """[s0 | s1 | ...] along `dim` -> [s0_0 | s1_0 | ... | s0_1 | s1_1 | ...]: section s split into tp parts,
    rank r's parts side by side, so that a contiguous TP split gives rank r part r of every section."""
    parts = [section.chunk(tp, dim) for section in w.split(list(sections), dim)]
    return torch.cat([p[r] for r in range(tp) for p in parts], dim)


def col_sections(config, n_in: int, sections: tuple[int, ...], bias: bool):
    """A ColumnParallelLinear whose output is the concatenation of `sections` (a gated FFN's [gate | up], a
    single-stream block's [qkv | mlp]); each TP rank holds its part of every section (as Megatron's gated
    fc1), so the layer at any tp is the same network. Weight and bias carry `tp_sections` for checks."""
    tp = _tp(config)
    total = sum(sections)

    def init(w: torch.Tensor) -> None:
        config.init_method(w)
        if tp > 1 and w.shape[0] == total:       # the full (CPU-initialised) weight, before Megatron splits it
            with torch.no_grad():
                w.copy_(interleave_sections(w, sections, tp))

    linear = tensor_parallel.ColumnParallelLinear(n_in, total, config=config, init_method=init, bias=bias,
                                                  gather_output=False, skip_bias_add=False)
    for param in (linear.weight, linear.bias):
        if param is not None:
            param.tp_sections = tuple(sections)
    return linear


def row_sections(config, sections: tuple[int, ...], n_out: int, bias: bool):
    """A RowParallelLinear whose input is the concatenation of `sections` (a single-stream block's
    [attention | mlp]), split per TP rank the way col_sections splits the output that feeds it."""
    tp = _tp(config)
    total = sum(sections)

    def init(w: torch.Tensor) -> None:
        config.output_layer_init_method(w)
        if tp > 1 and w.shape[1] == total:
            with torch.no_grad():
                w.copy_(interleave_sections(w, sections, tp, dim=1))

    linear = tensor_parallel.RowParallelLinear(total, n_out, config=config, init_method=init, bias=bias,
                                               input_is_parallel=True, skip_bias_add=False)
    linear.weight.tp_sections = tuple(sections)
    return linear


def row(config, n_in: int, n_out: int, bias: bool):
    return tensor_parallel.RowParallelLinear(n_in, n_out, config=config, init_method=config.output_layer_init_method,
                                             bias=bias, input_is_parallel=True, skip_bias_add=False)


class RMSNorm(nn.Module):
    """RMSNorm with or without a weight."""

    def __init__(self, width: int, affine: bool, eps: float = 1e-6, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width, dtype=dtype)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype)
        return y * self.weight if self.weight is not None else y


def make_norm(kind: str, width: int, affine: bool, dtype=None) -> nn.Module:
    if kind == "rmsnorm":
        return RMSNorm(width, affine, dtype=dtype)
    return nn.LayerNorm(width, elementwise_affine=affine, eps=1e-6, dtype=dtype)


def activation(kind: str, x: torch.Tensor) -> torch.Tensor:
    """GELU / GELU(tanh) of x, or the gated kinds of x = [gate | up]."""
    if kind == "gelu":
        return F.gelu(x)
    if kind == "gelu-tanh":
        return F.gelu(x, approximate="tanh")
    gate, up = x.chunk(2, -1)
    return (F.silu(gate) if kind == "swiglu" else F.gelu(gate, approximate="tanh")) * up


def _out(pair):
    return pair[0]


class QKNorm(nn.Module):
    """q and k norms over one head (shared over heads) or over all heads."""

    def __init__(self, m, q_width: int, k_width: int, dtype=None):
        super().__init__()
        if m.qk_norm_width == "head":
            q_width = k_width = m.head_dim
        self.per_head = m.qk_norm_width == "head"
        self.q_norm = make_norm(m.qk_norm, q_width, True, dtype)     # q/k norms carry a weight
        self.k_norm = make_norm(m.qk_norm, k_width, True, dtype)
        for param in self.parameters():       # shared over heads: each TP rank sees its own heads only
            param.tp_head_shard = True

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # q [S, B, a, d], k [S, B, g, d]
        if self.per_head:
            return self.q_norm(q), self.k_norm(k)
        return self.q_norm(q.flatten(-2)).view_as(q), self.k_norm(k.flatten(-2)).view_as(k)


def split_qkv(qkv: torch.Tensor, heads: int, groups: int, d: int):
    """Megatron's grouped layout: [S, B, g * (a/g + 2) * d] -> q [S, B, a, d], k, v [S, B, g, d]."""
    S, B = qkv.shape[:2]
    x = qkv.view(S, B, groups, (heads // groups + 2) * d)
    q, k, v = x.split([heads // groups * d, d, d], dim=-1)
    if heads == groups:
        return q, k, v
    return q.reshape(S, B, heads, d).contiguous(), k, v     # GQA: q regrouped into a copy (on every TP layout)


def core_attention(q, k, v, causal: bool = False, key_padding: torch.Tensor | None = None) -> torch.Tensor:
    """q [S, B, a, d], k / v [K, B, g, d] -> [S, B, a*d] (flash SDPA; GQA repeats the key/value heads)."""
    a, g = q.shape[2], k.shape[2]
    qb, kb, vb = (x.permute(1, 2, 0, 3) for x in (q, k, v))          # [B, a | g, S, d]
    mask = None if key_padding is None else ~key_padding                # True = attend
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, is_causal=causal and mask is None,
                                         enable_gqa=int(g) != int(a))
    return out.permute(2, 0, 1, 3).flatten(2)                          # [S, B, a*d]


class CoreAttention(nn.Module):
    """The attention core as a module (so FLOP counters and saved-tensor hooks can name it). With `config`
    (self-attention over the sequence) and cp > 1 the local queries attend to every CP rank's keys, by
    `parallel.cp_comm`: p2p ring attention, all-gather of K and V, or a2a (Ulysses) over heads
    (models/cp_attention.py). Non-causal attention does not depend on the keys' order, so any placement
    of the tokens over the CP ranks is exact (an MMDiT's text chunk sits next to its video chunk)."""

    def __init__(self, config=None):
        super().__init__()
        self.cp = config.context_parallel_size if config is not None else 1
        self.comm = {"all_gather": "all-gather"}.get(config.cp_comm_type or "p2p", config.cp_comm_type or "p2p") \
            if self.cp > 1 else "p2p"

    def forward(self, q, k, v, causal: bool = False, key_padding=None):
        if self.cp == 1:
            return core_attention(q, k, v, causal, key_padding)
        from megatron.core import parallel_state as ps

        from .cp_attention import heads_to_seq, ring_attention, seq_to_heads

        if self.comm == "p2p":
            return ring_attention(q, k, v)                                           # [s, b, n*d]
        if self.comm == "a2a":
            out = core_attention(seq_to_heads(q), seq_to_heads(k), seq_to_heads(v))   # [S, b, n/cp*d]
            return heads_to_seq(out, q.shape[-1])                                      # [s, b, n*d]
        group = ps.get_context_parallel_group()
        k = tensor_parallel.gather_from_sequence_parallel_region(k, True, group=group)   # [S, b, g, d]
        v = tensor_parallel.gather_from_sequence_parallel_region(v, True, group=group)
        return core_attention(q, k, v)


class SelfAttention(nn.Module):
    """Fused QKV (grouped for GQA) -> q/k norm -> RoPE -> attention -> output projection."""

    def __init__(self, m, config, width: int | None = None, proj: bool = True):
        super().__init__()
        h, d, g = m.hidden, m.head_dim, m.n_kv_heads
        w = h if width is None else width
        tp = _tp(config)
        self.heads, self.groups, self.d = m.heads // tp, g // tp, d
        self.linear_qkv = col(config, w, h + 2 * g * d, m.qkv_bias)
        self.linear_proj = row(config, h, w, m.out_bias) if proj else None
        self.qk = QKNorm(m, h // tp, g * d // tp, dtype=config.params_dtype) if m.qk_norm != "none" else None
        self.core_attention = CoreAttention(config)

    def qkv(self, x: torch.Tensor, angles: torch.Tensor | None):
        q, k, v = split_qkv(_out(self.linear_qkv(x)), self.heads, self.groups, self.d)
        if self.qk is not None:
            q, k = self.qk(q, k)
        if angles is not None:
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        return q, k, v

    def forward(self, x, angles=None, causal: bool = False):
        q, k, v = self.qkv(x, angles)
        return _out(self.linear_proj(self.core_attention(q, k, v, causal)))


class CrossAttention(nn.Module):
    """Query from the video, keys and values from the projected text (width h)."""

    def __init__(self, m, config):
        super().__init__()
        h, d, g = m.hidden, m.head_dim, m.n_kv_heads
        tp = _tp(config)
        self.heads, self.groups, self.d = m.heads // tp, g // tp, d
        self.linear_q = col(config, h, h, m.qkv_bias)
        self.linear_kv = replicated_input(col(config, h, 2 * g * d, m.qkv_bias))   # reads the text, not a shard
        self.linear_proj = row(config, h, h, m.out_bias)
        self.qk = QKNorm(m, h // tp, g * d // tp, dtype=config.params_dtype) if m.qk_norm != "none" else None
        self.core_attention = CoreAttention()

    def forward(self, x, context, context_mask=None):
        T, B = context.shape[:2]
        q = _out(self.linear_q(x))                          # [S, B, h/tp] (the whole sequence under SP)
        q = q.view(*q.shape[:2], self.heads, self.d)
        kv = _out(self.linear_kv(context)).view(T, B, self.groups, 2 * self.d)
        k, v = kv.chunk(2, -1)
        if self.qk is not None:
            q, k = self.qk(q, k)
        return _out(self.linear_proj(self.core_attention(q, k, v, key_padding=context_mask)))


class MLP(nn.Module):
    def __init__(self, m, config, width: int | None = None, ffn: int | None = None):
        super().__init__()
        w = m.hidden if width is None else width
        f = m.ffn if ffn is None else ffn
        gated = m.ffn_type in ("swiglu", "geglu")
        self.kind = m.ffn_type
        self.linear_fc1 = col_sections(config, w, (f, f) if gated else (f,), m.ffn_bias)
        self.linear_fc2 = row(config, f, w, m.ffn_bias)

    def forward(self, x):
        return _out(self.linear_fc2(activation(self.kind, _out(self.linear_fc1(x)))))


def _modulate(x, shift, scale):
    return x * (1 + scale[None]) + (shift[None] if shift is not None else 0)


class StandardLayer(nn.Module):
    """Self-attention (+ cross-attention) + FFN with the spec's norms and adaLN (see the module docstring)."""

    def __init__(self, m, config, text_tokens: int):
        super().__init__()
        h, dtype = m.hidden, config.params_dtype
        e = m.adaln_dim or h
        self.m, self.text_tokens, self.config = m, text_tokens, config
        self.norm1 = make_norm(m.norm, h, m.affine_norms, dtype)
        self.norm2 = make_norm(m.norm, h, m.affine_norms, dtype)
        self.self_attn = SelfAttention(m, config)
        if m.cross_attn:
            self.cross_attn = CrossAttention(m, config)
            if m.cross_attn_norm or m.adaln == "none":
                self.norm_cross = make_norm(m.norm, h, True, dtype)
        self.mlp = MLP(m, config)
        if m.adaln == "per-block":
            self.adaln_linear = nn.Linear(e, 6 * h, dtype=dtype)
        elif m.adaln == "single":
            self.scale_shift_table = nn.Parameter(torch.zeros(6, h, dtype=dtype))
        elif m.adaln == "expert":
            self.adaln_expert = nn.ModuleList([nn.Linear(e, 6 * h, dtype=dtype) for _ in range(2)])

    def _mods(self, cond):
        """Six [B, h] vectors (shift1, scale1, gate1, shift2, scale2, gate2), or expert pairs, or None."""
        a = self.m.adaln
        if a == "per-block":
            return tp_copy(self.adaln_linear(F.silu(cond)), self.config).chunk(6, -1)
        if a == "single":
            return tp_copy(cond.view(cond.shape[0], 6, -1) + self.scale_shift_table[None], self.config).unbind(1)
        return None

    def _expert(self, i, x, cond):
        """CogVideoX: one Linear(e, 6h) gives the video and the text tokens their own shift/scale/gate."""
        sv, sc, gv, st, sct, gt = tp_copy(self.adaln_expert[i](F.silu(cond)), self.config).chunk(6, -1)
        n = x.shape[0]
        T = self.text_tokens
        cp, sp = self.config.context_parallel_size, _sp(self.config)
        if sp or cp > 1:              # this rank's chunk / shard of [text; video]: its own text tokens, if any
            from megatron.core import parallel_state as ps

            tp = _tp(self.config) if sp else 1
            shard = (ps.get_context_parallel_rank() if cp > 1 else 0) * tp + (ps.get_tensor_model_parallel_rank() if sp else 0)
            T = min(max(T - shard * n, 0), n)
        shift = torch.cat([st[None].expand(T, -1, -1), sv[None].expand(n - T, -1, -1)])
        scale = torch.cat([sct[None].expand(T, -1, -1), sc[None].expand(n - T, -1, -1)])
        gate = torch.cat([gt[None].expand(T, -1, -1), gv[None].expand(n - T, -1, -1)])
        return shift, scale, gate

    def forward(self, x, cond, context=None, context_mask=None, angles=None):
        m = self.m
        if m.adaln == "expert":
            shift, scale, gate = self._expert(0, x, cond)
            x = x + gate * self.self_attn(self.norm1(x) * (1 + scale) + shift, angles, m.causal)
            shift, scale, gate = self._expert(1, x, cond)
            return x + gate * self.mlp(self.norm2(x) * (1 + scale) + shift)
        mods = self._mods(cond)
        y = self.norm1(x)
        if mods is not None:
            y = _modulate(y, mods[0], mods[1])
        a = self.self_attn(y, angles, m.causal)
        x = x + (mods[2][None] * a if mods is not None else a)
        if m.cross_attn:
            y = self.norm_cross(x) if hasattr(self, "norm_cross") else x
            x = x + self.cross_attn(y, context, context_mask)
        y = self.norm2(x)
        if mods is not None:
            y = _modulate(y, mods[3], mods[4])
        f = self.mlp(y)
        return x + (mods[5][None] * f if mods is not None else f)


class Stream(nn.Module):
    """One stream of a double-stream block: its norms, modulation, attention projections and FFN."""

    def __init__(self, m, config, width: int, ffn: int, mod: int, mod_width: int, proj: bool, mlp: bool):
        super().__init__()
        dtype = config.params_dtype
        self.norm1 = make_norm(m.norm, width, m.affine_norms, dtype)
        self.norm2 = make_norm(m.norm, width, m.affine_norms, dtype)
        self.attn = SelfAttention(m, config, width=width, proj=proj)
        self.mlp = MLP(m, config, width=width, ffn=ffn) if mlp else None
        self.adaln_linear = nn.Linear(m.adaln_dim or m.hidden, mod * mod_width, dtype=dtype)


class DoubleStreamLayer(nn.Module):
    """MMDiT block: per-stream weights, one joint attention over [text; video] (Mochi: asymmetric widths)."""

    def __init__(self, m, config, last: bool):
        super().__init__()
        h = m.hidden
        self.asym = m.text_hidden is not None
        self.causal = m.causal
        hy = m.text_hidden or h
        fy = m.text_ffn_hidden or m.ffn
        mod = 4 if self.asym else 6
        self.update_text = not (self.asym and last)
        self.img = Stream(m, config, h, m.ffn, mod, h, True, True)
        self.txt = Stream(m, config, hy, fy, mod if self.update_text else 1, hy, self.update_text, self.update_text)
        self.core_attention = CoreAttention(config)
        self.config = config

    def _mods(self, stream, cond, n):
        out = list(tp_copy(stream.adaln_linear(F.silu(cond)), self.config).chunk(n, -1))
        if n == 4:                       # scale and gate only (Mochi)
            return [None, out[0], out[1], None, out[2], out[3]]
        if n == 1:
            return [None, out[0], None, None, None, None]
        return out

    def forward(self, xt, xv, cond, angles=None):
        """xt [T, B, h_y] text, xv [S, B, h] video -> both updated (the text unchanged in Mochi's last block);
        under SP each stream is a sequence shard, and each stream's qkv gathers its whole sequence (under CP:
        this rank's chunk of it). angles: None or the RoPE tables of the (text, video) tokens qkv sees."""
        n = 4 if self.asym else 6
        mi, mt = self._mods(self.img, cond, n), self._mods(self.txt, cond, n if self.update_text else 1)
        yv = _modulate(self.img.norm1(xv), mi[0], mi[1])
        yt = _modulate(self.txt.norm1(xt), mt[0], mt[1])
        ang_t, ang_v = angles if angles is not None else (None, None)
        qv, kv_, vv = self.img.attn.qkv(yv, ang_v)
        qt, kt, vt = self.txt.attn.qkv(yt, ang_t)
        o = self.core_attention(torch.cat([qt, qv]), torch.cat([kt, kv_]), torch.cat([vt, vv]), self.causal)
        T = qt.shape[0]
        ot, ov = o[:T], o[T:]
        xv = xv + mi[2][None] * _out(self.img.attn.linear_proj(ov))
        xv = xv + mi[5][None] * self.img.mlp(_modulate(self.img.norm2(xv), mi[3], mi[4]))
        if self.update_text:
            xt = xt + mt[2][None] * _out(self.txt.attn.linear_proj(ot))
            xt = xt + mt[5][None] * self.txt.mlp(_modulate(self.txt.norm2(xt), mt[3], mt[4]))
        return xt, xv


class SingleStreamLayer(nn.Module):
    """Fused parallel attention + MLP block (Flux / HunyuanVideo single-stream)."""

    def __init__(self, m, config):
        super().__init__()
        h, d, g, f = m.hidden, m.head_dim, m.n_kv_heads, m.ffn
        tp = _tp(config)
        gated = m.ffn_type in ("swiglu", "geglu")
        self.kind, self.causal = m.ffn_type, m.causal
        self.heads, self.groups, self.d = m.heads // tp, g // tp, d
        self.qkv_local = (h + 2 * g * d) // tp
        self.linear1 = col_sections(config, h, (h + 2 * g * d,) + ((f, f) if gated else (f,)), m.qkv_bias)
        self.linear2 = row_sections(config, (h, f), h, m.out_bias)
        self.qk = QKNorm(m, h // tp, g * d // tp, dtype=config.params_dtype) if m.qk_norm != "none" else None
        self.norm = make_norm(m.norm, h, m.affine_norms, config.params_dtype)
        self.modulated = m.adaln != "none"
        if self.modulated:
            self.adaln_linear = nn.Linear(m.adaln_dim or h, 3 * h, dtype=config.params_dtype)
        self.core_attention = CoreAttention(config)
        self.config = config

    def forward(self, x, cond, angles=None):
        y = self.norm(x)
        if self.modulated:
            shift, scale, gate = tp_copy(self.adaln_linear(F.silu(cond)), self.config).chunk(3, -1)
            y = _modulate(y, shift, scale)
        qkv, mlp_in = _out(self.linear1(y)).split([self.qkv_local, _out_width(self.linear1) - self.qkv_local], -1)
        q, k, v = split_qkv(qkv, self.heads, self.groups, self.d)
        if self.qk is not None:
            q, k = self.qk(q, k)
        if angles is not None:
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        o = self.core_attention(q, k, v, self.causal)
        out = _out(self.linear2(torch.cat([o, activation(self.kind, mlp_in)], -1)))
        return x + (gate[None] * out if self.modulated else out)


def _out_width(linear) -> int:
    return linear.weight.shape[0]


class TextRefiner(nn.Module):
    """HunyuanVideo's token refiner: input Linear, timestep + context conditioning, R refiner blocks."""

    def __init__(self, D: int, h: int, freq: int, layers: int, dtype=None):
        super().__init__()
        self.heads = max(1, h // 128)
        self.input_embedder = nn.Linear(D, h, dtype=dtype)
        self.t_embedder = TimestepEmbedder(h, freq, dtype=dtype)
        self.c_embedder = nn.Sequential(nn.Linear(D, h, dtype=dtype), nn.SiLU(), nn.Linear(h, h, dtype=dtype))
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            blk = nn.Module()
            blk.norm1 = nn.LayerNorm(h, eps=1e-6, dtype=dtype)
            blk.qkv = nn.Linear(h, 3 * h, dtype=dtype)
            blk.proj = nn.Linear(h, h, dtype=dtype)
            blk.norm2 = nn.LayerNorm(h, eps=1e-6, dtype=dtype)
            blk.fc1 = nn.Linear(h, 4 * h, dtype=dtype)
            blk.fc2 = nn.Linear(4 * h, h, dtype=dtype)
            blk.adaln = nn.Linear(h, 2 * h, dtype=dtype)
            self.blocks.append(blk)

    def forward(self, text: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # text [T, B, D], t [B] -> [T, B, h]
        c = self.t_embedder(t) + self.c_embedder(text.mean(0))
        x = self.input_embedder(text)
        T, B, h = x.shape
        for blk in self.blocks:
            g1, g2 = blk.adaln(F.silu(c)).chunk(2, -1)
            q, k, v = blk.qkv(blk.norm1(x)).view(T, B, 3, self.heads, h // self.heads).unbind(2)
            x = x + g1[None] * blk.proj(core_attention(q, k, v))
            x = x + g2[None] * blk.fc2(F.silu(blk.fc1(blk.norm2(x))))
        return x


class AttentionPool(nn.Module):
    """Mochi's pooled text: one query (the mean token) attends over the text tokens, 8 heads."""

    def __init__(self, P: int, h: int, dtype=None):
        super().__init__()
        self.heads = 8
        self.to_kv = nn.Linear(P, 2 * P, dtype=dtype)
        self.to_q = nn.Linear(P, P, dtype=dtype)
        self.to_out = nn.Linear(P, h, dtype=dtype)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        # text [T, B, P] -> [B, h]
        T, B, P = text.shape
        q = self.to_q(text.mean(0)).view(1, B, self.heads, P // self.heads)
        k, v = self.to_kv(text).view(T, B, 2, self.heads, P // self.heads).unbind(2)
        return self.to_out(core_attention(q, k, v)[0])


class FinalLayer(nn.Module):
    """Output norm, modulation and projection (per-block, single table, expert, or an affine norm)."""

    def __init__(self, m, out_dim: int, dtype=None):
        super().__init__()
        h, e = m.hidden, m.adaln_dim or m.hidden
        self.adaln = m.adaln
        if m.adaln == "expert":
            self.norm_final = make_norm(m.norm, h, True, dtype)
            self.norm_out = make_norm(m.norm, h, True, dtype)
        else:
            self.norm = make_norm(m.norm, h, m.adaln == "none", dtype)
        if m.adaln in ("per-block", "expert"):
            self.adaln_linear = nn.Linear(e, 2 * h, dtype=dtype)
        elif m.adaln == "single":
            self.scale_shift_table = nn.Parameter(torch.zeros(2, h, dtype=dtype))
        self.linear = nn.Linear(h, out_dim, dtype=dtype)

    def forward(self, x, c, shared=None):
        if self.adaln == "expert":
            shift, scale = self.adaln_linear(F.silu(c)).chunk(2, -1)
            return self.linear(_modulate(self.norm_out(self.norm_final(x)), shift, scale))
        y = self.norm(x)
        if self.adaln == "per-block":
            shift, scale = self.adaln_linear(F.silu(c)).chunk(2, -1)
            y = _modulate(y, shift, scale)
        elif self.adaln == "single":
            shift, scale = (self.scale_shift_table[None] + c[:, None]).unbind(1)
            y = _modulate(y, shift, scale)
        return self.linear(y)


class Table(nn.Module):
    """A learned table as a module, so that its parameter group is named after the attribute."""

    def __init__(self, *shape: int, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(*shape, dtype=dtype))


class CurrentDiT(nn.Module):
    """Video DiT (or language model) of the current block vocabulary (see the module docstring)."""

    def __init__(self, spec, config, stage: int = 0, stages: int = 1):
        super().__init__()
        m, v = spec.model, spec.video
        self.spec, self.m, self.config = spec, m, config
        h, dtype = m.hidden, config.params_dtype
        e = m.adaln_dim or h
        self.grid = v.grid
        self.joint = m.text_mode in ("in-sequence", "mmdit")
        self.T = v.text_tokens if self.joint else 0
        # pipeline stage: blocks [lo, hi) of the main stack then the single-stream blocks (planner order)
        self.pre_process, self.post_process = stage == 0, stage == stages - 1
        self.model_type = _encoder_or_decoder()          # read by Megatron's pipeline schedules
        self.class_cond = m.conditioning == "class"        # label dropout in training (models/loss.py)
        self.input_tensor = None
        per_stage = m.depth // stages
        lo, hi = stage * per_stage, (stage + 1) * per_stage
        self.block_range = (min(lo, m.layers), min(hi, m.layers))
        self.single_range = (max(lo, m.layers) - m.layers, max(hi, m.layers) - m.layers)
        first = self.pre_process
        # outside the blocks, as planner/blocks.embed_groups places them: "first", "every", "last"
        self.every_stage = ("class_embed", "t_embedder", "guidance_embedder", "pooled_text_proj", "pos_frequencies",
                            "t_block") + (() if self.joint else ("text_proj",))
        if m.vocab_size:
            self.token_embed = tensor_parallel.VocabParallelEmbedding(m.vocab_size, h, init_method=config.init_method,
                                                                      config=config)
            if m.learned_pos_embed:
                self.pos_embed = Table(spec.seq_len, h, dtype=dtype)
        else:
            self.patch = (v.patch_t, v.patch_h, v.patch_w)
            self.c_out = v.latent_channels * (2 if m.learn_sigma else 1)
            if first:
                self.patch_embed = nn.Conv3d(v.latent_channels, h, kernel_size=self.patch, stride=self.patch,
                                             dtype=dtype)
            if m.cond_in_channels and first:
                self.cond_embed = nn.Linear(m.cond_in_channels, h, dtype=dtype)
            if m.conditioning == "class":
                self.class_embed = nn.Embedding(m.num_classes + 1, h, dtype=dtype)
            if m.time_mlp:
                self.t_embedder = TimestepEmbedder(e, m.timestep_freq_dim, dtype=dtype)
            if m.guidance_embed:
                self.guidance_embedder = TimestepEmbedder(e, m.timestep_freq_dim, dtype=dtype)
            if m.pooled_text_dim:
                P = m.pooled_text_dim
                self.pooled_text_proj = {
                    "mlp": lambda: nn.Sequential(nn.Linear(P, h, dtype=dtype), nn.SiLU(), nn.Linear(h, h, dtype=dtype)),
                    "linear": lambda: nn.Linear(P, h, dtype=dtype),
                    "attn-pool": lambda: AttentionPool(P, h, dtype=dtype)}[m.pooled_text]()
            if m.learned_pos_embed and first:
                self.pos_embed = Table(spec.seq_len, h, dtype=dtype)
            if m.pos == "rope3d-learned":
                self.pos_frequencies = Table(3, m.heads, m.head_dim // 2, dtype=dtype)
                # each TP rank rotates its own heads: the gradient of the others' rows is summed over TP
                self.pos_frequencies.weight.tp_head_shard = True
            if m.adaln == "single":
                self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(h, 6 * h, dtype=dtype))
            if m.text_mode != "none" and (first or not self.joint):   # joint text enters on the first stage
                w, D = m.text_hidden or h, v.text_dim
                self.text_proj = {
                    "mlp": lambda: nn.Sequential(nn.Linear(D, w, dtype=dtype), nn.GELU(approximate="tanh"),
                                                 nn.Linear(w, w, dtype=dtype)),
                    "linear": lambda: nn.Linear(D, w, dtype=dtype),
                    "refiner": lambda: TextRefiner(D, h, m.timestep_freq_dim, m.text_refiner_layers, dtype)}[m.text_proj]()
            if m.pos == "sincos3d" and first:
                self.register_buffer("sincos", sincos_3d(h, self.grid).to(dtype), persistent=False)
        main = range(*self.block_range)
        if m.text_mode == "mmdit":
            self.blocks = nn.ModuleList([DoubleStreamLayer(m, config, last=i == m.layers - 1) for i in main])
        else:
            self.blocks = nn.ModuleList([StandardLayer(m, config, self.T) for _ in main])
        if m.single_layers:
            self.single_blocks = nn.ModuleList([SingleStreamLayer(m, config) for _ in range(*self.single_range)])
        if not self.post_process:
            pass                                  # the final layer lives on the last stage
        elif m.vocab_size:
            self.final_layer = make_norm(m.norm, h, True, dtype)
            if not m.tied_embeddings:
                self.output_head = replicated_input(tensor_parallel.ColumnParallelLinear(
                    h, m.vocab_size, config=config, init_method=config.init_method, bias=False, gather_output=True))
        else:
            self.final_layer = FinalLayer(m, v.patch_volume * self.c_out, dtype)
        if _sp(config):
            mark_sequence_parallel(self)

    def _angles(self, device):
        """(cos, sin) of the RoPE angles, computed once per forward and shared by every block."""
        m = self.m
        if m.pos == "rope3d":
            angles = rope_angles(self.grid, m.head_dim, self.T).to(device)
        elif m.pos == "rope3d-learned":
            freq, tp = self.pos_frequencies.weight, _tp(self.config)          # [3, heads, d/2]
            if tp > 1:                  # this TP rank's heads
                from megatron.core import parallel_state as ps

                freq = freq.chunk(tp, 1)[ps.get_tensor_model_parallel_rank()]
            angles = learned_angles(freq, self.grid, self.T)                     # [S, heads/tp, d/2]
        else:
            return None
        return rope_tables(angles, self.config.params_dtype)

    def _token_order(self, phase: str) -> torch.Tensor | None:
        """Global sequence positions of the tokens this rank's attention sees, in its order (None: all, in
        order). Under CP a rank holds chunk r of the sequence (an MMDiT: chunk r of the text and chunk r of the
        video); an MMDiT's single-stream blocks see, after the TP gather, [text_0; video_0; text_1; ...] of the
        rank's TP shards. phase: "main" (standard blocks), "text" / "video" (double-stream), "single"."""
        from megatron.core import parallel_state as ps

        cp, tp = self.config.context_parallel_size, (_tp(self.config) if _sp(self.config) else 1)
        r = ps.get_context_parallel_rank() if cp > 1 else 0
        total = self.spec.seq_len
        if self.m.text_mode != "mmdit" or phase == "main" or (phase == "single" and tp == 1 and cp == 1):
            if cp == 1:
                return None
            n = total // cp
            return torch.arange(r * n, (r + 1) * n)
        T, S = self.T, total - self.T
        text = torch.arange(r * T // cp, (r + 1) * T // cp)
        video = T + torch.arange(r * S // cp, (r + 1) * S // cp)
        if phase == "text":
            return text if cp > 1 else None
        if phase == "video":
            return video if cp > 1 else None
        return torch.cat([torch.cat([t, v]) for t, v in zip(text.chunk(tp), video.chunk(tp))])

    def _tables(self, angles, phase: str):
        """The RoPE tables of `phase` (see _token_order)."""
        order = None if angles is None else self._token_order(phase)
        if order is None:
            return angles
        order = order.to(angles[0].device)
        return angles[0][order], angles[1][order]

    def set_input_tensor(self, input_tensor) -> None:
        """Megatron's pipeline schedules hand a stage its input here (a list with one tensor)."""
        self.input_tensor = input_tensor[0] if isinstance(input_tensor, (list, tuple)) else input_tensor

    def _blocks(self, x, cond, context=None, context_mask=None):
        """This stage's blocks. x [S, B, h] (with the text first when it is in the sequence; under SP this rank's
        sequence shard); an MMDiT carries [text; video] (each stream's shard under SP), the same layout the
        single-stream blocks take, so a pipeline stage boundary may fall anywhere. The last stage returns the
        video tokens of an MMDiT (with the text first for `in-sequence`); other stages the carried tensor."""
        angles = self._angles(x.device)
        if self.m.text_mode != "mmdit":
            angles = self._tables(angles, "main")
            for blk in self.blocks:
                x = blk(x, cond, context, context_mask, angles)
            for blk in getattr(self, "single_blocks", []):
                x = blk(x, cond, angles)
            return x
        text_local = self.T // self.config.context_parallel_size // (_tp(self.config) if _sp(self.config) else 1)
        if len(self.blocks):
            # the streams: carried as one tensor [text; video], or (a narrower text stream) the text apart
            xt, xv = (context, x) if context is not None else (x[:text_local], x[text_local:])
            pair = None
            if angles is not None:
                if self._token_order("text") is None:
                    pair = ((angles[0][:self.T], angles[1][:self.T]), (angles[0][self.T:], angles[1][self.T:]))
                else:
                    pair = (self._tables(angles, "text"), self._tables(angles, "video"))
            for blk in self.blocks:
                xt, xv = blk(xt, xv, cond, pair)
            if self.post_process and not self.m.single_layers:
                return xv
            x = torch.cat([xt, xv])   # the hand-over (or the next stage's input): one sequence [text; video]
        if self.single_range[1] > self.single_range[0]:
            angles = self._tables(angles, "single")
            for blk in self.single_blocks:
                x = blk(x, cond, angles)
        if not self.post_process:
            return x
        if not _sp(self.config):
            # the video tokens as their own tensor: the final norm keeps S tokens, as after the SP gather
            return x[text_local:].clone()
        return x[text_local:]

    def forward_lm(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, S] -> logits [S, B, V]."""
        x = self.token_embed(tokens.t())                                       # [S, B, h]
        if hasattr(self, "pos_embed"):
            x = x + self.pos_embed.weight[:, None]
        x = sp_gather(self._blocks(sp_scatter(x, self.config), None), self.config)   # [S, B, h]
        x = self.final_layer(x)
        if self.m.tied_embeddings:
            return F.linear(x, self.token_embed.weight)
        return _out(self.output_head(x))

    def forward(self, latents, timesteps=None, text_states=None, text_mask=None, class_labels=None,
                pooled_text=None, guidance=None, cond_latents=None):
        """latents [B, C, T, H, W] -> prediction of the same shape (a language model: token ids [B, S] ->
        logits [S, B, V], `forward_lm`)."""
        m = self.m
        if m.vocab_size:
            return self.forward_lm(latents)
        B = latents.shape[0]
        dtype = self.config.params_dtype
        latents = latents.to(dtype)
        text_states = text_states.to(dtype) if text_states is not None else None
        c = self.t_embedder(timesteps) if hasattr(self, "t_embedder") else None          # [B, e]
        if m.guidance_embed:
            c = c + self.guidance_embedder(guidance if guidance is not None else torch.full_like(timesteps, 6.0))
        if m.conditioning == "class":
            c = c + self.class_embed(class_labels)
        txt = None
        if text_states is not None and m.text_mode != "none":
            raw = text_states.transpose(0, 1)                                              # [T, B, D]
            if hasattr(self, "text_proj"):
                txt = self.text_proj(raw, timesteps) if m.text_proj == "refiner" else self.text_proj(raw)
            if m.pooled_text == "attn-pool" and m.pooled_text_dim:
                c = c + self.pooled_text_proj(raw)
        if m.pooled_text_dim and m.pooled_text != "attn-pool":
            pooled = pooled_text if pooled_text is not None else latents.new_zeros(B, m.pooled_text_dim)
            c = c + self.pooled_text_proj(pooled)
        cond_vec = self.t_block(c) if m.adaln == "single" else c
        mask = None if text_mask is None else ~text_mask.bool()[:, None, None, :]
        cfg = self.config       # under SP the blocks run on sequence shards, gathered before the final layer
        if self.pre_process:
            x = self.patch_embed(latents).flatten(2).permute(2, 0, 1)                    # [S, B, h]
            if m.cond_in_channels:
                cond = cond_latents if cond_latents is not None else x.new_zeros(*x.shape[:2], m.cond_in_channels)
                x = x + self.cond_embed(cond)
            if hasattr(self, "sincos"):
                x = x + self.sincos[:, None]
            # CP: this rank's chunk (an MMDiT: its chunk of each stream); SP: the TP shard of it
            if m.text_mode == "in-sequence":
                x = sp_scatter(_cp_chunk(torch.cat([txt, x]), cfg), cfg)
            elif m.text_mode == "mmdit" and m.text_hidden not in (None, m.hidden):
                x, txt = sp_scatter(_cp_chunk(x, cfg), cfg), sp_scatter(_cp_chunk(txt, cfg), cfg)   # widths differ
            elif m.text_mode == "mmdit":
                x = torch.cat([sp_scatter(_cp_chunk(txt, cfg), cfg), sp_scatter(_cp_chunk(x, cfg), cfg)])
            else:
                x = sp_scatter(_cp_chunk(x, cfg), cfg)
        else:
            x = self.input_tensor                            # the previous stage's output (a shard under SP)
        context = txt if m.cross_attn or (m.text_mode == "mmdit" and m.text_hidden not in (None, m.hidden)) else None
        x = self._blocks(x, cond_vec, context, mask if m.cross_attn else None)
        if not self.post_process:
            return x.contiguous()
        x = _cp_gather(sp_gather(x, cfg), cfg)
        if m.text_mode == "in-sequence":
            x = x[self.T:]
        x = self.final_layer(x, c)                                                        # [S, B, pv*C]
        t, hh, ww = self.grid
        pt, ph, pw = self.patch
        x = x.view(t, hh, ww, B, pt, ph, pw, self.c_out).permute(3, 7, 0, 4, 1, 5, 2, 6)
        return x.reshape(B, self.c_out, t * pt, hh * ph, ww * pw)


def _cp_chunk(x: torch.Tensor, config) -> torch.Tensor:
    """This CP rank's contiguous chunk of a whole sequence [S, B, w] (a view)."""
    cp = config.context_parallel_size
    if cp == 1:
        return x
    from megatron.core import parallel_state as ps

    return x.chunk(cp, 0)[ps.get_context_parallel_rank()]


def _cp_gather(x: torch.Tensor, config) -> torch.Tensor:
    """The CP ranks' chunks -> the whole sequence; backward: reduce-scatter (each CP rank backpropagates
    loss / cp, gradients summed over CP)."""
    if config.context_parallel_size == 1:
        return x
    from megatron.core import parallel_state as ps

    return tensor_parallel.gather_from_sequence_parallel_region(x, True, group=ps.get_context_parallel_group())


def _encoder_or_decoder():
    from megatron.core.enums import ModelType

    return ModelType.encoder_or_decoder


def mark_sequence_parallel(model: nn.Module) -> None:
    """Under SP the block norms see a sequence shard: their (replicated) parameters are marked
    `sequence_parallel`, so training sums their gradients over TP (models/train_loop.py). The row-parallel
    biases are marked by Megatron; q/k norms run after the gather (marked `tp_head_shard`)."""
    for root in ("blocks", "single_blocks"):
        for mod in getattr(model, root, nn.ModuleList()).modules():
            if isinstance(mod, (RMSNorm, nn.LayerNorm)):
                for param in mod.parameters():
                    if not getattr(param, "tp_head_shard", False):
                        param.sequence_parallel = True


def check_supported(spec) -> str | None:
    """One line saying why the spec cannot be built with these blocks, or None (the rule is the planner's:
    soraplan.planner.trainable.unsupported, which the layout search, train and launch use too)."""
    from soraplan.planner.trainable import unsupported

    return unsupported(spec)
