"""Validate-matrix rows of the current block vocabulary (planner/blocks.py, models/blocks.py), as plain data.

Each entry is (name, spec flags): BLOCK_CASES run the tiny model on CPU (on top of the matrix's BASE flags),
TP_CASES in two gloo ranks (parameters and saved bytes per rank, with and without sequence parallelism), META_CASES a released-model preset at full
size on the meta device (parameters, FLOPs and saved bytes at bf16).
"""

from __future__ import annotations

from typing import Any

BLOCK_CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("SwiGLU, RMSNorm, GQA (2 kv heads), no biases",
     {"ffn_type": "swiglu", "norm": "rmsnorm", "kv_heads": 2, "qkv_bias": False, "out_bias": False, "ffn_bias": False}),
    ("GeGLU, affine norms with adaLN, Wan cross-attention norm",
     {"ffn_type": "geglu", "norm_affine": True, "cross_attn_norm": True}),
    ("QK-norm RMS per head, RoPE 3D", {"qk_norm": "rmsnorm", "pos": "rope3d"}),
    ("QK-norm LayerNorm over all heads, GELU(tanh)", {"qk_norm": "layernorm", "qk_norm_width": "all",
                                                     "ffn_type": "gelu-tanh"}),
    ("text in the sequence, expert adaLN (CogVideoX)",
     {"text": "in-sequence", "adaln": "expert", "adaln_dim": 32, "norm_affine": True, "qk_norm": "layernorm",
      "text_proj": "linear", "pos": "rope3d"}),
    ("MMDiT double + single-stream blocks, refiner, pooled text, guidance",
     {"text": "mmdit", "single_layers": 2, "adaln": "per-block", "qk_norm": "rmsnorm", "pos": "rope3d",
      "pooled_text_dim": 16, "guidance_embed": True, "text_proj": "refiner", "text_refiner_layers": 1,
      "cond_in_channels": 8}),
    ("asymmetric MMDiT (Mochi): narrower text stream, learned RoPE, attention pool",
     {"text": "mmdit", "text_hidden": 32, "text_ffn_hidden": 64, "adaln": "per-block", "ffn_type": "swiglu",
      "norm": "rmsnorm", "norm_affine": False, "qk_norm": "rmsnorm", "pos": "rope3d-learned", "text_proj": "linear",
      "pooled_text_dim": 32, "pooled_text": "attn-pool", "ffn_bias": False, "qkv_bias": False}),
)

LM = {"vocab_size": 97, "tokens": 32, "text": "none", "adaln": "none", "time_mlp": False, "causal": True}
BLOCK_CASES += (
    ("LM: causal, GQA, SwiGLU, RMSNorm, RoPE, untied logits",
     {**LM, "kv_heads": 2, "ffn_type": "swiglu", "norm": "rmsnorm", "norm_affine": True, "pos": "rope3d",
      "qkv_bias": False, "out_bias": False, "ffn_bias": False}),
    ("LM: causal, LayerNorm, GELU, learned positions, tied embeddings",
     {**LM, "learned_pos_embed": True, "tied_embeddings": True}),
)

TP_CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("SwiGLU, GQA, RMSNorm, QK-norm, RoPE at TP=2 (2 gloo ranks)",
     {"tp": 2, "gpus": 2, "sequence_parallel": False, "ffn_type": "swiglu", "norm": "rmsnorm", "kv_heads": 2,
      "qk_norm": "rmsnorm", "pos": "rope3d"}),
    ("MMDiT double + single stream at TP=2 (2 gloo ranks)",
     {"tp": 2, "gpus": 2, "sequence_parallel": False, "text": "mmdit", "single_layers": 2, "adaln": "per-block",
      "qk_norm": "rmsnorm", "pos": "rope3d", "text_proj": "linear"}),
    # sequence parallelism: the blocks on sequence shards, an MMDiT's text stream sharded too
    ("SwiGLU, GQA, RMSNorm, QK-norm, RoPE at TP=2 + SP (2 gloo ranks)",
     {"tp": 2, "gpus": 2, "sequence_parallel": True, "ffn_type": "swiglu", "norm": "rmsnorm", "kv_heads": 2,
      "qk_norm": "rmsnorm", "pos": "rope3d"}),
    ("MMDiT double + single stream at TP=2 + SP (2 gloo ranks)",
     {"tp": 2, "gpus": 2, "sequence_parallel": True, "text": "mmdit", "single_layers": 2, "adaln": "per-block",
      "qk_norm": "rmsnorm", "pos": "rope3d", "text_proj": "linear"}),
    ("text in the sequence, expert adaLN at TP=2 + SP (2 gloo ranks)",
     {"tp": 2, "gpus": 2, "sequence_parallel": True, "text": "in-sequence", "adaln": "expert", "adaln_dim": 32,
      "norm_affine": True, "qk_norm": "layernorm", "text_proj": "linear", "pos": "rope3d"}),
    ("LM: causal, GQA, SwiGLU, RoPE at TP=2 + SP (2 gloo ranks)",
     {**LM, "vocab_size": 96, "tp": 2, "gpus": 2, "sequence_parallel": True, "kv_heads": 2, "ffn_type": "swiglu",
      "norm": "rmsnorm", "norm_affine": True, "pos": "rope3d", "qkv_bias": False, "out_bias": False,
      "ffn_bias": False}),
    # context parallelism (32 frames: 64 video tokens): an MMDiT's text and video split into cp chunks each,
    # text in the sequence split with the video
    ("SwiGLU, RMSNorm, QK-norm, RoPE at CP=2 p2p (2 gloo ranks)",
     {"frames": 32, "cp": 2, "gpus": 2, "cp_comm": "p2p", "ffn_type": "swiglu", "norm": "rmsnorm",
      "qk_norm": "rmsnorm", "pos": "rope3d"}),
    ("MMDiT double + single stream at CP=2 p2p (2 gloo ranks)",
     {"frames": 32, "cp": 2, "gpus": 2, "cp_comm": "p2p", "text": "mmdit", "single_layers": 2, "adaln": "per-block",
      "qk_norm": "rmsnorm", "pos": "rope3d", "text_proj": "linear"}),
    ("MMDiT double + single stream at CP=2 a2a (2 gloo ranks)",
     {"frames": 32, "cp": 2, "gpus": 2, "cp_comm": "a2a", "text": "mmdit", "single_layers": 2, "adaln": "per-block",
      "qk_norm": "rmsnorm", "pos": "rope3d", "text_proj": "linear"}),
    ("text in the sequence, expert adaLN at CP=2 p2p (2 gloo ranks)",
     {"frames": 32, "cp": 2, "gpus": 2, "cp_comm": "p2p", "text": "in-sequence", "adaln": "expert",
      "adaln_dim": 32, "norm_affine": True, "qk_norm": "layernorm", "text_proj": "linear", "pos": "rope3d"}),
    ("MMDiT double + single stream at CP=2 p2p x TP=2 + SP (4 gloo ranks)",
     {"frames": 32, "cp": 2, "tp": 2, "gpus": 4, "sequence_parallel": True, "cp_comm": "p2p",
      "text": "mmdit", "single_layers": 2, "adaln": "per-block", "qk_norm": "rmsnorm", "pos": "rope3d",
      "text_proj": "linear"}),
)

META_CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("hunyuanvideo on meta (MMDiT, 119,056 tokens, bf16)", {"model": "hunyuanvideo"}),
    ("cogvideox-5b on meta (text in the sequence, 17,776 tokens, bf16)", {"model": "cogvideox-5b"}),
)
