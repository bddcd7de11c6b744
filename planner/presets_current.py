"""Presets of released video DiTs and language models, with their published geometry.

Every entry equals the released reference configuration (layers, widths, heads, FFN, norms, biases,
embedders); docs/presets.md cites the repository file or paper table behind each value and derives every
parameter group. `PRESET_SOURCES` holds the one-line source that `soraplan estimate presets` prints.
"""

from __future__ import annotations

from typing import Any


def _video(frames: int, height: int, width: int, fps: float, st: int, ss: int, channels: int, causal: bool,
           patch: tuple[int, int, int], text_tokens: int, text_dim: int, **extra: Any) -> dict[str, Any]:
    return {"frames": frames, "height": height, "width": width, "fps": fps, "vae_stride_t": st, "vae_stride_s": ss,
            "latent_channels": channels, "causal_first_frame": causal, "patch_t": patch[0], "patch_h": patch[1],
            "patch_w": patch[2], "text_tokens": text_tokens, "text_dim": text_dim, **extra}


def _llm_video(seq_len: int) -> dict[str, Any]:
    """A language model: the sequence is given in tokens; the video fields do not apply."""
    return {"frames": 1, "height": 8, "width": 8, "fps": 1, "vae_stride_t": 1, "vae_stride_s": 8,
            "latent_channels": 1, "causal_first_frame": False, "patch_t": 1, "patch_h": 1, "patch_w": 1,
            "text_tokens": 0, "text_dim": 1, "tokens": seq_len}


def _preset(name: str, video: dict[str, Any], **model: Any) -> dict[str, Any]:
    return {"name": name, "video": video, "model": {"name": name, "attention": "full", "conditioning": "text", **model}}


# Wan2.1 (Wan-Video/Wan2.1 wan/configs/wan_t2v_*.py, wan/modules/model.py): PixArt-style shared time projection +
# per-block table, cross-attention to 512 umT5 tokens, LayerNorms without affine (an affine one before
# cross-attention), RMS q/k norms over all heads, RoPE 3D, GELU(tanh) FFN, 81 frames, causal 4x8x8 VAE.
_WAN = dict(text="cross-attn", adaln="single", ffn_type="gelu-tanh", norm_affine=False, cross_attn_norm=True,
            qk_norm="rmsnorm", qk_norm_width="all", pos="rope3d", text_proj="mlp")
WAN_1_3B = _preset("wan2.1-t2v-1.3b", _video(81, 480, 832, 16, 4, 8, 16, True, (1, 2, 2), 512, 4096),
                   layers=30, hidden=1536, heads=12, ffn_hidden=8960, **_WAN)
WAN_14B = _preset("wan2.1-t2v-14b", _video(81, 720, 1280, 16, 4, 8, 16, True, (1, 2, 2), 512, 4096),
                  layers=40, hidden=5120, heads=40, ffn_hidden=13824, **_WAN)

# MMDiT (Flux layout): double-stream blocks with per-stream weights and joint attention, then single-stream
# blocks; per-block modulation, LayerNorms without affine, RMS q/k norms per head, RoPE 3D.
_MMDIT = dict(text="mmdit", adaln="per-block", ffn_type="gelu-tanh", norm_affine=False, qk_norm="rmsnorm",
              qk_norm_width="head", pos="rope3d", pooled_text_dim=768, pooled_text="mlp")
HUNYUANVIDEO = _preset("hunyuanvideo", _video(129, 720, 1280, 24, 4, 8, 16, True, (1, 2, 2), 256, 4096),
                       layers=20, single_layers=40, hidden=3072, heads=24, ffn_hidden=12288, text_proj="refiner",
                       text_refiner_layers=2, guidance_embed=True, **_MMDIT)
OPEN_SORA_2 = _preset("open-sora-2.0", _video(129, 576, 1024, 24, 4, 8, 16, True, (1, 2, 2), 512, 4096),
                      layers=19, single_layers=38, hidden=3072, heads=24, ffn_hidden=12288, text_proj="linear",
                      cond_in_channels=68, **_MMDIT)

# CogVideoX (diffusers cogvideox_transformer_3d.py; THUDM/CogVideo sat configs): [226 text; video] in one
# sequence with shared weights, expert adaLN from a 512-wide timestep embedding, affine LayerNorms,
# LayerNorm q/k norms per head; 2B: 3D sin-cos positions, 5B: RoPE 3D.
_COG = dict(text="in-sequence", adaln="expert", adaln_dim=512, ffn_type="gelu-tanh", norm_affine=True,
            qk_norm="layernorm", qk_norm_width="head", text_proj="linear")
COGVIDEOX_2B = _preset("cogvideox-2b", _video(49, 480, 720, 8, 4, 8, 16, True, (1, 2, 2), 226, 4096),
                       layers=30, hidden=1920, heads=30, ffn_hidden=7680, timestep_freq_dim=1920, pos="sincos3d", **_COG)
COGVIDEOX_5B = _preset("cogvideox-5b", _video(49, 480, 720, 8, 4, 8, 16, True, (1, 2, 2), 226, 4096),
                       layers=42, hidden=3072, heads=48, ffn_hidden=12288, timestep_freq_dim=3072, pos="rope3d", **_COG)

# Step-Video-T2V (stepfun-ai/Step-Video-T2V stepvideo/modules): PixArt blocks without biases, affine LayerNorms,
# RMS q/k norms per head, RoPE 3D, 48 x 6144; the VAE encodes 17-frame chunks into 3 latent frames at 16x16.
STEP_VIDEO = _preset("step-video-t2v", _video(204, 544, 992, 24, 8, 16, 64, False, (1, 1, 1), 320, 6144,
                                              vae_chunk=(17, 3)),
                     layers=48, hidden=6144, heads=48, ffn_hidden=24576, text="cross-attn", adaln="single",
                     ffn_type="gelu-tanh", qkv_bias=False, out_bias=False, ffn_bias=False, norm_affine=True,
                     qk_norm="rmsnorm", pos="rope3d", text_proj="mlp", pooled_text_dim=1024, pooled_text="linear")

# Mochi 1 (genmoai/mochi asymm_models_joint.py): asymmetric MMDiT, video 3072 / text 1536, SwiGLU without
# biases, parameter-free modulated RMSNorms, RMS q/k norms, RoPE with learned frequencies, attention pooling.
MOCHI_1 = _preset("mochi-1", _video(163, 480, 848, 30, 6, 8, 12, True, (1, 2, 2), 256, 4096),
                  layers=48, hidden=3072, heads=24, ffn_hidden=8192, text="mmdit", text_hidden=1536,
                  text_ffn_hidden=4096, adaln="per-block", ffn_type="swiglu", ffn_bias=False, qkv_bias=False,
                  norm="rmsnorm", norm_affine=False, qk_norm="rmsnorm", pos="rope3d-learned", text_proj="linear",
                  pooled_text_dim=4096, pooled_text="attn-pool")

# LTX-Video 2B 0.9 (Lightricks/LTX-Video transformer3d.py): PixArt blocks, RMS q/k norms over all heads,
# RoPE, a 32x32x8 VAE with 128 latent channels and patch 1.
LTX_VIDEO = _preset("ltx-video", _video(121, 512, 768, 24, 8, 32, 128, True, (1, 1, 1), 128, 4096),
                    layers=28, hidden=2048, heads=32, ffn_hidden=8192, text="cross-attn", adaln="single",
                    ffn_type="gelu-tanh", norm_affine=False, qk_norm="rmsnorm", qk_norm_width="all", pos="rope3d",
                    text_proj="mlp")

# Movie Gen Video 30B (Polyak et al. 2024, Table 1): Llama-3 blocks (RMSNorm, SwiGLU, no biases) with
# cross-attention to the text, 48 x 6144, FFN 16384; 768^2, 256 frames (16 s at 16 fps), TAE 8x8x8, patch
# 1x2x2 = 73,728 tokens. Assumed (not in a source read): per-block adaLN Linear(512, 6h) from a 512-wide
# timestep embedding, a single Linear text projection from 4096-d text states, 512 text tokens.
MOVIE_GEN = _preset("movie-gen-30b", _video(256, 768, 768, 16, 8, 8, 16, False, (1, 2, 2), 512, 4096),
                    layers=48, hidden=6144, heads=48, ffn_hidden=16384, text="cross-attn", adaln="per-block",
                    adaln_dim=512, ffn_type="swiglu", qkv_bias=False, out_bias=False, ffn_bias=False,
                    norm="rmsnorm", norm_affine=True, cross_attn_norm=True, pos="rope3d", text_proj="linear")

# Language models: causal self-attention, token embedding and output logits.
_LLAMA = dict(text="none", adaln="none", time_mlp=False, causal=True, ffn_type="swiglu", qkv_bias=False,
              out_bias=False, ffn_bias=False, norm="rmsnorm", norm_affine=True, pos="rope3d", vocab_size=128256,
              tied_embeddings=False)
LLAMA_3_8B = _preset("llama-3-8b", _llm_video(8192), layers=32, hidden=4096, heads=32, kv_heads=8,
                     ffn_hidden=14336, **_LLAMA)
LLAMA_3_70B = _preset("llama-3-70b", _llm_video(8192), layers=80, hidden=8192, heads=64, kv_heads=8,
                      ffn_hidden=28672, **_LLAMA)
GPT_3 = _preset("gpt-3-175b", _llm_video(2048), layers=96, hidden=12288, heads=96, ffn_hidden=49152, text="none",
                adaln="none", time_mlp=False, causal=True, ffn_type="gelu", norm="layernorm", norm_affine=True,
                learned_pos_embed=True, vocab_size=50257, tied_embeddings=True)

CURRENT_PRESETS: dict[str, dict[str, Any]] = {
    p["name"]: p for p in (WAN_1_3B, WAN_14B, HUNYUANVIDEO, COGVIDEOX_2B, COGVIDEOX_5B, OPEN_SORA_2, STEP_VIDEO,
                           MOCHI_1, LTX_VIDEO, MOVIE_GEN, LLAMA_3_8B, LLAMA_3_70B, GPT_3)}

PRESET_SOURCES: dict[str, str] = {
    "wan2.1-t2v-1.3b": "Wan-Video/Wan2.1@9737cba wan/configs/wan_t2v_1_3B.py, wan/modules/model.py",
    "wan2.1-t2v-14b": "Wan-Video/Wan2.1@9737cba wan/configs/wan_t2v_14B.py, wan/modules/model.py",
    "hunyuanvideo": "Tencent/HunyuanVideo@fa14b00 hyvideo/modules/models.py (HYVideo-T/2-cfgdistill)",
    "cogvideox-2b": "diffusers@00789ad cogvideox_transformer_3d.py; THUDM/CogVideo sat/configs/cogvideox_2b.yaml",
    "cogvideox-5b": "diffusers@00789ad cogvideox_transformer_3d.py; THUDM/CogVideo sat/configs/cogvideox_5b.yaml",
    "open-sora-2.0": "hpcaitech/Open-Sora@7ad6a96 configs/diffusion/inference/256px.py, opensora/models/mmdit",
    "step-video-t2v": "stepfun-ai/Step-Video-T2V@675e08c stepvideo/modules/model.py, blocks.py",
    "mochi-1": "genmoai/mochi@0c86aeb pipelines.py, dit/joint_model/asymm_models_joint.py",
    "ltx-video": "Lightricks/LTX-Video@5260738 transformer3d.py; diffusers transformer_ltx.py defaults",
    "movie-gen-30b": "Polyak et al. 2024 (arXiv:2410.13720) Table 1; adaLN and text projection assumed",
    "llama-3-8b": "meta-llama/llama3@a0940f9 llama/model.py; Meta-Llama-3-8B config.json",
    "llama-3-70b": "meta-llama/llama3@a0940f9 llama/model.py; Meta-Llama-3-70B config.json",
    "gpt-3-175b": "Brown et al. 2020 (arXiv:2005.14165) Table 2.1; GPT-2 vocabulary, tied embeddings",
}
