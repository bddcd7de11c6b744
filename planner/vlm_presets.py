"""Published sizes of the open video/image captioners Sora-style re-captioning would use (and the LLMs that summarise).

Data only: `caption.py` turns these into FLOPs, memory and GPU-days. Each entry cites where its numbers come
from (the model's Hugging Face config.json or paper). Conventions:
  * VisionEncoder: a ViT run once per frame at `image_size` (square); `patches = (image_size / patch)^2`
    (+1 when the encoder keeps a CLS token); `llm_tokens` is what the adapter hands the LLM per frame.
  * LLM: a decoder; `gated_mlp` (SwiGLU: 3 matrices of h x f) for every LLM here; GQA via `kv_heads`.
  * `visual_expert` (CogVLM): image tokens use a second copy of QKV/dense/MLP weights in every layer - the
    FLOPs per token are unchanged, the weights in memory double.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VisionEncoder:
    name: str
    layers: int
    width: int
    heads: int
    mlp: int
    patch: int
    image_size: int
    cls_token: bool
    llm_tokens: int           # tokens per image handed to the LLM (after the adapter)
    adapter: str              # "mlp" (Linear d_v->h [+ Linear h->h]) | "resampler" (cross-attn, `llm_tokens` queries) | "glu"
    adapter_layers: int = 2
    params_published_b: float = 0.0

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch) ** 2

    @property
    def seq(self) -> int:
        """Tokens inside the encoder per image."""
        return self.patches + (1 if self.cls_token else 0)


@dataclass(frozen=True)
class LLM:
    name: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    gated_mlp: bool = True
    params_published_b: float = 0.0
    tied_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class VLM:
    name: str
    vision: VisionEncoder
    llm: LLM
    visual_expert: bool = False
    params_published_b: float = 0.0
    source: str = ""
    note: str = ""


# --- LLMs (also usable alone for the summarisation pass) ------------------------------------------------------
# Qwen-7B as in Qwen-VL-Chat's config.json: 32 x 4096, intermediate_size 22016 = 2 x 11008 (w1, w2) + c_proj,
# 32 heads (MHA), vocab 151936.
QWEN_7B = LLM("qwen-7b", 32, 4096, 11008, 32, 32, 151936, params_published_b=7.7)
# Vicuna-7B v1.5 (Llama-2-7B): 32 x 4096, 11008, 32 heads, vocab 32000 (CogVLM, Video-LLaVA).
VICUNA_7B = LLM("vicuna-7b", 32, 4096, 11008, 32, 32, 32000, params_published_b=6.7)
# Yi-34B-Chat as in Yi-VL-34B's config.json: 60 x 7168, 20480, 56 heads, 8 KV heads, vocab 64000.
YI_34B = LLM("yi-34b", 60, 7168, 20480, 56, 8, 64000, params_published_b=34.4)
# InternLM2-7B as in internlm-xcomposer2-vl-7b's config.json: 32 x 4096, 14336, 32 heads, 8 KV, vocab 92544.
INTERNLM2_7B = LLM("internlm2-7b", 32, 4096, 14336, 32, 8, 92544, params_published_b=7.7)
# MiniCPM-2.4B (MiniCPM-V v1's LLM): 40 x 2304, 5760, 36 heads, vocab 122753, tied embeddings
# (2.4 B without, 2.7 B with the embedding table).
MINICPM_2B = LLM("minicpm-2.4b", 40, 2304, 5760, 36, 36, 122753, params_published_b=2.7, tied_embeddings=True)
# Llama-2-13B (a common summariser): 40 x 5120, 13824, 40 heads, vocab 32000.
LLAMA2_13B = LLM("llama-2-13b", 40, 5120, 13824, 40, 40, 32000, params_published_b=13.0)

LLMS: dict[str, LLM] = {m.name: m for m in (QWEN_7B, VICUNA_7B, YI_34B, INTERNLM2_7B, MINICPM_2B, LLAMA2_13B)}

# --- Vision encoders ------------------------------------------------------------------------------------------
# Qwen-VL: OpenCLIP ViT-bigG/14 at 448 (config.json "visual": layers 48, width 1664, heads 16, mlp_ratio 4.9231 ->
# 8192, patch 14): 1024 patches, compressed by a one-layer cross-attention adapter with 256 learned queries.
# Qwen-VL paper Table 1: ViT 1.9 B, adapter 0.08 B, LLM 7.7 B = 9.6 B.
VIT_BIGG_448 = VisionEncoder("openclip-vit-bigG-14@448", 48, 1664, 16, 8192, 14, 448, False, 256, "resampler", 1, 1.9)
# CogVLM-17B: EVA2-CLIP-E (config.json vision_config: 63 layers, 1792, 16 heads, 15360, patch 14, 490, 1226
# positions = 1225 patches + CLS); CLS dropped, a GLU adapter maps 1225 tokens (+ boi/eoi) into the LLM. 4.4 B.
EVA2_CLIP_E_490 = VisionEncoder("eva2-clip-e@490", 63, 1792, 16, 15360, 14, 490, True, 1227, "glu", 1, 4.4)
# Yi-VL-34B: OpenCLIP ViT-H/14 at 448 (vit/.../config.json: 32 layers, 1280, 16 heads, 5120, patch 14), 1024
# patch tokens through a 2-layer MLP ("mlp2x_gelu_Norm"). 0.63 B.
VIT_H_448 = VisionEncoder("openclip-vit-H-14@448", 32, 1280, 16, 5120, 14, 448, True, 1024, "mlp", 2, 0.63)
# InternLM-XComposer2-VL-7B: CLIP ViT-L/14 resized to 490 (config.json img_size 490): 24 x 1024, 16 heads, 4096;
# 1225 tokens through an MLP projector. 0.3 B.
VIT_L_490 = VisionEncoder("clip-vit-L-14@490", 24, 1024, 16, 4096, 14, 490, True, 1225, "mlp", 2, 0.3)
# MiniCPM-V (v1, OmniLMM-3B): SigLIP so400m/14 at 448 (27 x 1152, 16 heads, 4304), 1024 patches -> perceiver
# resampler with query_num 64. 0.4 B.
SIGLIP_448 = VisionEncoder("siglip-so400m-14@448", 27, 1152, 16, 4304, 14, 448, False, 64, "resampler", 1, 0.4)
# Video-LLaVA-7B: LanguageBind video encoder (ViT-L/14 at 224: 24 x 1024, 16 heads, 4096), 8 frames per video,
# 256 patch tokens per frame (CLS dropped) through a 2-layer MLP.
VIT_L_224 = VisionEncoder("languagebind-vit-L-14@224", 24, 1024, 16, 4096, 14, 224, True, 256, "mlp", 2, 0.3)

VLMS: dict[str, VLM] = {v.name: v for v in (
    VLM("qwen-vl-chat", VIT_BIGG_448, QWEN_7B, params_published_b=9.6,
        source="huggingface.co/Qwen/Qwen-VL-Chat config.json; Bai et al. 2023 Table 1"),
    VLM("cogvlm", EVA2_CLIP_E_490, VICUNA_7B, visual_expert=True, params_published_b=17.0,
        source="huggingface.co/THUDM/cogvlm-chat-hf config (CogVLMConfig.vision_config); Wang et al. 2023",
        note="visual expert: image tokens use their own QKV + MLP weights (same FLOPs, 2x LLM weights)"),
    VLM("yi-vl-34b", VIT_H_448, YI_34B, params_published_b=35.0,
        source="huggingface.co/01-ai/Yi-VL-34B config.json and vit/clip-vit-H-14-...-448/config.json"),
    VLM("internlm-xcomposer2-vl-7b", VIT_L_490, INTERNLM2_7B, params_published_b=8.6,
        source="huggingface.co/internlm/internlm-xcomposer2-vl-7b config.json (img_size 490)",
        note="Partial-LoRA (rank 256) on image tokens is not counted (< 3% of the LLM FLOPs)"),
    VLM("minicpm-v", SIGLIP_448, MINICPM_2B, params_published_b=3.0,
        source="huggingface.co/openbmb/MiniCPM-V config.json (query_num 64, SigLIP so400m)"),
    VLM("video-llava-7b", VIT_L_224, VICUNA_7B, params_published_b=7.4,
        source="huggingface.co/LanguageBind/Video-LLaVA-7B; Lin et al. 2023 (8 frames x 256 tokens)"),
)}


def get_vlm(name: str) -> VLM:
    key = name.strip().lower()
    if key not in VLMS:
        raise KeyError(f"--vlm: unknown captioner {name!r}; known: {', '.join(VLMS)}")
    return VLMS[key]


def get_llm(name: str) -> LLM:
    key = name.strip().lower()
    if key not in LLMS:
        raise KeyError(f"--summarize-llm: unknown LLM {name!r}; known: {', '.join(LLMS)}")
    return LLMS[key]
