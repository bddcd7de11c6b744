"""Core attention for the video DiT: SDPA (flash semantics) or Megatron's unfused DotProductAttention,
over full, 3D-window or spatial/temporal token groups.

Megatron's Attention hands the core q, k, v as [s, b, heads/tp, head_dim] and expects [s, b, h/tp] back.
Window and spatial/temporal attention regroup tokens into the batch dimension, so the FLOPs really drop:
  full              [S, B]                       one group of S tokens
  window:T,H,W      [S, B] -> [T*H*W, B*n_win]   n_win = S / (T*H*W) non-overlapping 3D windows
  spatial (even)    [S, B] -> [h*w, B*t]         a frame attends within itself
  temporal (odd)    [S, B] -> [t, B*h*w]         a position attends across frames
Layer parity is 0-based (Megatron's layer_number is 1-based), the same as planner.flops.attention_keys.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule


def group_tokens(x: torch.Tensor, grid, kind: str, window, layer0: int) -> tuple[torch.Tensor, tuple]:
    """[S, B, n, d] -> [s_g, B*G, n, d] (tokens of one group contiguous along dim 0)."""
    S, B, n, d = x.shape
    t, h, w = grid
    if kind == "full":
        return x, ("full",)
    if kind == "window":
        wt, wh, ww = window
        x = x.view(t // wt, wt, h // wh, wh, w // ww, ww, B, n, d)            # [nt, wt, nh, wh, nw, ww, B, n, d]
        x = x.permute(1, 3, 5, 6, 0, 2, 4, 7, 8)                              # [wt, wh, ww, B, nt, nh, nw, n, d]
        return x.reshape(wt * wh * ww, B * (t // wt) * (h // wh) * (w // ww), n, d), ("window",)
    if layer0 % 2 == 0:                                                     # spatial: within a frame
        x = x.view(t, h * w, B, n, d).permute(1, 2, 0, 3, 4)                  # [h*w, B, t, n, d]
        return x.reshape(h * w, B * t, n, d), ("spatial",)
    x = x.view(t, h * w, B, n, d).permute(0, 2, 1, 3, 4)                      # [t, B, h*w, n, d]
    return x.reshape(t, B * h * w, n, d), ("temporal",)


def ungroup_tokens(y: torch.Tensor, grid, kind: str, window, layer0: int, B: int) -> torch.Tensor:
    """Inverse of group_tokens for the core output: [s_g, B*G, hp] -> [S, B, hp]."""
    t, h, w = grid
    hp = y.shape[-1]
    if kind == "full":
        return y
    if kind == "window":
        wt, wh, ww = window
        y = y.view(wt, wh, ww, B, t // wt, h // wh, w // ww, hp)            # [wt, wh, ww, B, nt, nh, nw, hp]
        y = y.permute(4, 0, 5, 1, 6, 2, 3, 7)                                # [nt, wt, nh, wh, nw, ww, B, hp]
        return y.reshape(t * h * w, B, hp)
    if layer0 % 2 == 0:
        y = y.view(h * w, B, t, hp).permute(2, 0, 1, 3)                      # [t, h*w, B, hp]
        return y.reshape(t * h * w, B, hp)
    y = y.view(t, B, h * w, hp).permute(0, 2, 1, 3)                          # [t, h*w, B, hp]
    return y.reshape(t * h * w, B, hp)


class VideoCoreAttention(MegatronModule):
    """Drop-in for Megatron's core_attention submodule (same constructor and forward signature).

    attention_type "self" applies the spec's pattern; "cross" is always full over the text tokens.
    kernel "flash": F.scaled_dot_product_attention; "unfused": Megatron's DotProductAttention.
    """

    def __init__(self, config, layer_number: int, attn_mask_type=AttnMaskType.no_mask, attention_type: str = "self",
                 attention_dropout: float | None = None, softmax_scale: float | None = None,
                 grid: tuple[int, int, int] = (1, 1, 1), pattern: str = "full",
                 window: tuple[int, int, int] | None = None, kernel: str = "flash", **kwargs):
        super().__init__(config=config)
        self.layer0 = layer_number - 1
        self.attention_type = attention_type
        self.grid, self.window, self.kernel = grid, window, kernel   # from the ModuleSpec params (the Spec)
        self.kind = pattern if attention_type == "self" else "full"
        self.cp = config.context_parallel_size
        self.cp_comm = {"all_gather": "all-gather"}.get(config.cp_comm_type or "p2p", config.cp_comm_type or "p2p")
        if self.cp > 1 and attention_type == "self":
            from soraplan.planner.cp import cp_refusal   # the rule search and launch apply too

            reason = cp_refusal(self.kind, kernel, config.attention_dropout, config.num_attention_heads,
                                config.tensor_model_parallel_size, self.cp, self.cp_comm)
            if reason:
                raise ValueError(reason)
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout
        self.unfused = None
        if self.kernel == "unfused":
            from megatron.core.transformer.dot_product_attention import DotProductAttention

            self.unfused = DotProductAttention(config, layer_number, attn_mask_type, attention_type,
                                               attention_dropout=attention_dropout, softmax_scale=softmax_scale,
                                               **{k: v for k, v in kwargs.items() if k in ("cp_comm_type", "pg_collection")})

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        # query [sq, b, n, d]; key/value [sk, b, n, d]; attention_mask: None or bool [b, 1, 1, sk], True = masked
        cp_self = self.cp > 1 and self.attention_type == "self"
        if cp_self and self.cp_comm == "p2p":         # ring attention over the CP group (models/cp_attention.py)
            from .cp_attention import ring_attention

            return ring_attention(query, key, value)                                    # [s, b, n*d]
        if cp_self and self.cp_comm == "a2a":         # Ulysses: all tokens, heads/cp; back at the end
            from .cp_attention import heads_to_seq, seq_to_heads

            query, key, value = seq_to_heads(query), seq_to_heads(key), seq_to_heads(value)  # [S, b, n/cp, d]
            out = self._core(query, key, value, attention_mask)                         # [S, b, n/cp*d]
            return heads_to_seq(out, query.shape[-1])                                   # [s, b, n*d]
        if cp_self:
            # context parallel (all-gather): local queries attend to all keys; K, V all-gathered over the CP group
            # (backward: reduce-scatter of their gradients)
            from megatron.core import parallel_state as ps
            from megatron.core.tensor_parallel import gather_from_sequence_parallel_region

            g = ps.get_context_parallel_group()
            key = gather_from_sequence_parallel_region(key, True, group=g)              # [S, b, n, d]
            value = gather_from_sequence_parallel_region(value, True, group=g)          # [S, b, n, d]
        return self._core(query, key, value, attention_mask)

    def _core(self, query, key, value, attention_mask):
        """The attention pattern over the tokens given: [sq, b, n, d] -> [sq, b, n*d]."""
        B = query.shape[1]
        q, _ = group_tokens(query, self.grid, self.kind, self.window, self.layer0)      # [sq_g, B*G, n, d]
        k, _ = group_tokens(key, self.grid, self.kind, self.window, self.layer0)        # [sk_g, B*G, n, d]
        v, _ = group_tokens(value, self.grid, self.kind, self.window, self.layer0)      # [sk_g, B*G, n, d]
        if self.unfused is not None:
            mask_type = AttnMaskType.padding if attention_mask is not None else AttnMaskType.no_mask
            out = self.unfused(q, k, v, attention_mask, attn_mask_type=mask_type)       # [sq_g, B*G, n*d]
        else:
            keep = None if attention_mask is None else ~attention_mask                  # SDPA: True = attend
            p = self.dropout_p if self.training else 0.0
            if p > 0 and not self.config.sequence_parallel:   # under SP the block already forked the TP stream
                from megatron.core import tensor_parallel

                ctx = tensor_parallel.get_cuda_rng_tracker().fork()
            else:
                ctx = contextlib.nullcontext()
            with ctx:
                o = F.scaled_dot_product_attention(
                    q.permute(1, 2, 0, 3), k.permute(1, 2, 0, 3), v.permute(1, 2, 0, 3),  # [B*G, n, s, d] views
                    attn_mask=keep, dropout_p=p)                                          # -> [B*G, n, sq_g, d]
            out = o.permute(2, 0, 1, 3).reshape(o.shape[2], o.shape[0], -1)             # [sq_g, B*G, n*d] (copy)
        return ungroup_tokens(out, self.grid, self.kind, self.window, self.layer0, B)   # [sq, b, n*d]
