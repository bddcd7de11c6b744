"""The ONE function that turns a Spec into megatron-core's TransformerConfig.

Everything the transformer block needs (sizes, TP/SP/PP/CP, dtype, dropout, recompute) comes from the
Spec here; nothing else in soraplan builds a TransformerConfig.
"""

from __future__ import annotations

from typing import Any

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name])


def recompute_settings(spec) -> dict[str, Any]:
    """Planner semantics -> Megatron's recompute fields.

    full: every layer of the stage (recompute_layers=None) -> method "uniform", 1 layer per chunk;
          the first n layers (recompute_layers=n) -> method "block", n layers.
    selective: the attention core (recompute_modules=["core_attn"]).
    """
    p = spec.parallel
    if p.recompute == "full":
        if p.recompute_layers is None:
            return {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1}
        return {"recompute_granularity": "full", "recompute_method": "block", "recompute_num_layers": p.recompute_layers}
    if p.recompute == "selective":
        return {"recompute_granularity": "selective", "recompute_modules": ["core_attn"]}
    return {"recompute_granularity": None}


def transformer_config(spec, **overrides: Any):
    """Spec -> megatron.core.transformer.TransformerConfig (overrides win, e.g. use_cpu_initialization)."""
    import torch
    import torch.nn.functional as F
    from megatron.core.transformer import TransformerConfig

    m, k, p = spec.model, spec.kernels, spec.parallel
    dtype = torch_dtype(k.param_dtype)
    kw: dict[str, Any] = dict(
        num_layers=m.layers,
        hidden_size=m.hidden,
        num_attention_heads=m.heads,
        ffn_hidden_size=m.ffn,
        kv_channels=m.head_dim,
        tensor_model_parallel_size=p.tp,
        pipeline_model_parallel_size=p.pp,
        context_parallel_size=p.cp,
        cp_comm_type={"all-gather": "all_gather"}.get(p.cp_comm, p.cp_comm),
        sequence_parallel=p.sequence_parallel and p.tp > 1,
        hidden_dropout=k.dropout,
        attention_dropout=k.dropout,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=k.param_dtype == "bf16",
        fp16=k.param_dtype == "fp16",
        add_bias_linear=True,
        add_qkv_bias=True,
        gated_linear_unit=False,
        activation_func=lambda x: F.gelu(x, approximate="tanh"),   # DiT: GELU(approximate="tanh")
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
        normalization="LayerNorm",
        layernorm_epsilon=1e-6,
        apply_query_key_layer_scaling=False,
        attention_softmax_in_fp32=True,
        use_cpu_initialization=not torch.cuda.is_available(),
        perform_initialization=True,
        init_method=torch.nn.init.xavier_uniform_,           # DiT initialises every Linear with xavier_uniform
        output_layer_init_method=torch.nn.init.xavier_uniform_,
    )
    kw.update(recompute_settings(spec))
    if p.pp > 1:
        kw["variable_seq_lengths"] = False
    kw.update(overrides)
    return TransformerConfig(**kw)
