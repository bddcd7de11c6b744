"""The DiT transformer layer and block, assembled from megatron-core pieces with ModuleSpec.

A `DiTLayer` is Megatron's TransformerLayer (same submodules: SelfAttention / CrossAttention with
ColumnParallel/RowParallel linears, MLP) whose forward applies adaLN modulation:

  per-block (DiT adaLN-Zero): [shift, scale, gate]x2 = Linear(SiLU(c)) per layer, zero-initialised
  single (PixArt-alpha):      [shift, scale, gate]x2 = scale_shift_table[6, h] + t_block(c) (shared)
  none:                       LayerNorms with affine, no modulation, no gates

  x = x + gate_msa * Dropout(SelfAttn(LN(x) * (1 + scale_msa) + shift_msa))
  x = x + Dropout(CrossAttn(x, text))                     (PixArt: no norm, no gate; a norm with adaln none)
  x = x + gate_mlp * Dropout(MLP(LN(x) * (1 + scale_mlp) + shift_mlp))

Conditioning is an explicit argument (`cond`: c [B, h] for per-block, t_mod [B, 6h] for single).
Sequence parallel: the modulation vectors are per sample but act on a sequence shard, so they pass through
copy_to_tensor_model_parallel_region (identity forward, TP all-reduce backward) to get whole gradients.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.attention import CrossAttention, CrossAttentionSubmodules, SelfAttention, SelfAttentionSubmodules
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlock
from megatron.core.transformer.transformer_layer import TransformerLayer, TransformerLayerSubmodules

from .attention import VideoCoreAttention


class DiTNorm(torch.nn.LayerNorm):
    """LayerNorm (affine or not) whose params are marked `sequence_parallel` for the TP grad all-reduce."""

    def __init__(self, config, hidden_size: int, eps: float = 1e-6, affine: bool = False, **kwargs):
        super().__init__(hidden_size, eps=eps, elementwise_affine=affine, dtype=config.params_dtype)
        for p in self.parameters():
            setattr(p, "sequence_parallel", config.sequence_parallel)


def _replicated_input(linear: ColumnParallelLinear) -> ColumnParallelLinear:
    """A ColumnParallelLinear whose input is the same on every TP rank (text, conditioning vectors), not a
    sequence shard: no SP all-gather, input grads all-reduced over TP instead."""
    linear.sequence_parallel = False
    linear.allreduce_dgrad = linear.tp_group is not None and linear.tp_group.size() > 1
    return linear


class DiTCrossAttention(CrossAttention):
    """Megatron CrossAttention; linear_kv reads the (replicated) text states, never a sequence shard."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _replicated_input(self.linear_kv)


def _zeros(w):
    return torch.nn.init.zeros_(w)


class DiTLayer(TransformerLayer):
    """TransformerLayer + adaLN modulation (see the module docstring)."""

    def __init__(self, config, submodules, layer_number: int = 1, hidden_dropout=None, pg_collection=None,
                 vp_stage=None, adaln: str = "single"):
        super().__init__(config, submodules, layer_number=layer_number, hidden_dropout=hidden_dropout,
                         pg_collection=pg_collection, vp_stage=vp_stage)
        h = config.hidden_size
        self.adaln = adaln
        if adaln == "per-block":
            self.adaLN_modulation = _replicated_input(ColumnParallelLinear(
                h, 6 * h, config=config, init_method=_zeros, bias=True, gather_output=True,
                skip_bias_add=False, tp_comm_buffer_name="adaln", tp_group=self.tp_group))
        elif adaln == "single":
            self.scale_shift_table = torch.nn.Parameter(torch.randn(6, h, dtype=config.params_dtype) / h ** 0.5)

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        p = self.hidden_dropout
        return F.dropout(x, p=p, training=self.training) if p > 0 and self.training else x

    def _modulation(self, cond: torch.Tensor | None) -> tuple[torch.Tensor, ...] | None:
        if self.adaln == "none":
            return None
        h = self.config.hidden_size
        if self.adaln == "per-block":
            mod, _ = self.adaLN_modulation(F.silu(cond)[None])                 # [1, B, 6h]
            mod = mod[0].view(-1, 6, h)                                         # [B, 6, h]
        else:
            mod = self.scale_shift_table[None] + cond.view(-1, 6, h)            # [B, 6, h]
        if self.config.sequence_parallel:
            mod = tensor_parallel.copy_to_tensor_model_parallel_region(mod)     # whole grads under SP
        return tuple(m[None] for m in mod.unbind(1))                            # 6 x [1, B, h]

    def forward(self, hidden_states, cond=None, context=None, context_mask=None):
        # hidden_states [s, B, h] (s = S/tp under SP); cond [B, h] | [B, 6h]; context [T, B, h]; mask [B,1,1,T]
        x = hidden_states
        mod = self._modulation(cond)
        # --- self-attention ---
        y = self.input_layernorm(x)                                             # [s, B, h]
        if mod is not None:
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod
            y = y * (1 + scale_msa) + shift_msa                                 # [s, B, h]
        y, bias = self.self_attention(y, attention_mask=None)                   # [s, B, h], [h]
        y = self._dropout(y + bias)                                             # [s, B, h]
        x = x + (gate_msa * y if mod is not None else y)                        # [s, B, h]
        # --- cross-attention to the text ---
        if context is not None:
            y = self.pre_cross_attn_layernorm(x)                                # [s, B, h] (identity unless adaln none)
            y, bias = self.cross_attention(y, attention_mask=context_mask, key_value_states=context)  # [s, B, h]
            x = x + self._dropout(y + bias)                                     # [s, B, h]
        # --- MLP ---
        y = self.pre_mlp_layernorm(x)                                           # [s, B, h]
        if mod is not None:
            y = y * (1 + scale_mlp) + shift_mlp                                 # [s, B, h]
        y, bias = self.mlp(y)                                                   # [s, B, h], [h]
        y = self._dropout(y + bias)                                             # [s, B, h]
        x = x + (gate_mlp * y if mod is not None else y)                        # [s, B, h]
        return x


class DiTBlock(TransformerBlock):
    """Megatron TransformerBlock over DiTLayers with explicit conditioning and Megatron's recompute config."""

    def forward(self, hidden_states, cond=None, context=None, context_mask=None):
        # hidden_states [s, B, h] -> [s, B, h]
        c = self.config
        rng = tensor_parallel.get_cuda_rng_tracker().fork() if c.sequence_parallel else contextlib.nullcontext()
        full = c.recompute_granularity == "full" and self.training
        n = len(self.layers)
        with rng:
            if full and c.recompute_method == "uniform":
                k = c.recompute_num_layers
                for start in range(0, n, k):
                    hidden_states = tensor_parallel.checkpoint(
                        self._run(start, min(start + k, n)), False, hidden_states, cond, context, context_mask)
            else:
                k = c.recompute_num_layers if full else 0
                for i in range(n):
                    if i < k:
                        hidden_states = tensor_parallel.checkpoint(
                            self._run(i, i + 1), False, hidden_states, cond, context, context_mask)
                    else:
                        hidden_states = self.layers[i](hidden_states, cond, context, context_mask)
        return hidden_states

    def _run(self, start: int, end: int):
        def run(x, cond, context, context_mask):
            for i in range(start, end):
                x = self.layers[i](x, cond, context, context_mask)
            return x
        return run


def dit_layer_spec(spec) -> ModuleSpec:
    """The ModuleSpec of one DiT layer for this Spec (attention pattern, kernel, adaLN, cross-attention)."""
    m, v = spec.model, spec.video
    core = ModuleSpec(module=VideoCoreAttention, params={
        "grid": v.grid, "pattern": m.attention_kind, "window": m.window, "kernel": spec.kernels.attention_kernel})
    norm_affine = m.adaln == "none"
    norm = ModuleSpec(module=DiTNorm, params={"affine": norm_affine})
    self_attn = ModuleSpec(module=SelfAttention, params={"attn_mask_type": AttnMaskType.no_mask},
                           submodules=SelfAttentionSubmodules(linear_qkv=ColumnParallelLinear, core_attention=core,
                                                              linear_proj=RowParallelLinear))
    cross = IdentityOp
    if m.cross_attn:
        cross = ModuleSpec(module=DiTCrossAttention, params={"attn_mask_type": AttnMaskType.padding},
                           submodules=CrossAttentionSubmodules(linear_q=ColumnParallelLinear, linear_kv=ColumnParallelLinear,
                                                               core_attention=core, linear_proj=RowParallelLinear))
    return ModuleSpec(
        module=DiTLayer, params={"adaln": m.adaln},
        submodules=TransformerLayerSubmodules(
            input_layernorm=norm,
            self_attention=self_attn,
            pre_cross_attn_layernorm=norm if (m.cross_attn and norm_affine) else IdentityOp,
            cross_attention=cross,
            pre_mlp_layernorm=norm,
            mlp=ModuleSpec(module=MLP, submodules=MLPSubmodules(linear_fc1=ColumnParallelLinear, linear_fc2=RowParallelLinear)),
        ))
