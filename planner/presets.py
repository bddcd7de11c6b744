"""Named presets: partial Spec dicts that `--model NAME` (or `preset:` in YAML) starts from.

Each preset is data, merged under the YAML file and the CLI flags (see config.py). Published sizes are
written next to each entry so a reader can check them.
"""

from __future__ import annotations

from typing import Any

from .presets_current import CURRENT_PRESETS

# soraplan-6B: a "6B video transformer", the size the reference estimate assumes. 40 x 3072, 24 heads (head dim 128), FFN 4x,
# cross-attention to 512 T5-XXL-style text states (4096-d), PixArt-alpha adaLN-single,
# VAE 4x8x8 with 16 latent channels, patch 2x2x2 -> 960 frames at 256^2 = 120*16*16 = 30,720 tokens.
SORAPLAN_6B: dict[str, Any] = {
    "name": "soraplan-6B",
    "video": {"frames": 960, "height": 256, "width": 256, "fps": 24, "vae_stride_t": 4, "vae_stride_s": 8,
              "latent_channels": 16, "patch_t": 2, "patch_h": 2, "patch_w": 2, "text_tokens": 512, "text_dim": 4096},
    "model": {"name": "soraplan-6B", "layers": 40, "hidden": 3072, "heads": 24, "ffn_hidden": 12288,
              "cross_attn": True, "adaln": "single", "attention": "full", "conditioning": "text"},
}

# DiT (Peebles & Xie 2023), Table 1: S 12x384/6, B 12x768/12, L 24x1024/16, XL 28x1152/16; ImageNet 256^2
# (latent 32x32x4 from the SD VAE, stride 8), class-conditional (1000 classes + null), per-block adaLN-Zero,
# learned sigma (8 output channels). DiT-XL/2: 675 M parameters, 118.6 G(MAC)flops.
_DIT_SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}


def _dit(size: str, patch: int) -> dict[str, Any]:
    layers, hidden, heads = _DIT_SIZES[size]
    return {
        "name": f"DiT-{size}/{patch}",
        "video": {"frames": 1, "height": 256, "width": 256, "fps": 1, "vae_stride_t": 1, "vae_stride_s": 8,
                  "latent_channels": 4, "patch_t": 1, "patch_h": patch, "patch_w": patch, "text_tokens": 0, "text_dim": 1},
        "model": {"name": f"DiT-{size}/{patch}", "layers": layers, "hidden": hidden, "heads": heads, "ffn_hidden": 4 * hidden,
                  "cross_attn": False, "adaln": "per-block", "attention": "full", "conditioning": "class",
                  "num_classes": 1000, "learn_sigma": True},
    }


# SiT (Ma et al. 2024, "SiT: Exploring Flow and Diffusion-based Generative Models with Scalable Interpolant
# Transformers"): the DiT backbone unchanged (same sizes, adaLN-Zero, learned sigma off for the velocity
# objective does not change the matmul count meaningfully - we keep DiT's 2C output so SiT-XL/2 = 675 M,
# 118.6 GMACs as in SiT Table 1); only the loss (an interpolant) differs, which costs nothing per step.
def _sit(size: str, patch: int) -> dict[str, Any]:
    d = _dit(size, patch)
    name = f"SiT-{size}/{patch}"
    return {**d, "name": name, "model": {**d["model"], "name": name}}


# U-ViT (Bao et al. 2023, "All are Worth Words: A ViT Backbone for Diffusion Models", Table 1 and the configs of
# github.com/baofff/U-ViT): every input is a token (time token = the width-h sinusoid, no MLP; class token from an
# Embedding of 1001 rows incl. the null class; learned position table over the 2 + N tokens), pre-LN ViT blocks
# (qkv_bias=False, MLP 4x, no adaLN), depth//2 in-blocks, 1 mid-block, depth//2 out-blocks, each out-block first
# fuses its long skip: Linear(2h, h)(cat[x, skip]). Output: LayerNorm + Linear(h, p*p*C) (no learned sigma).
#   name        blocks  h     heads  published params        (latent ImageNet, SD VAE 32x32x4 at 256^2, 64x64x4 at 512^2)
#   U-ViT-M     17      768   12     131 M
#   U-ViT-L     21      1024  16     287 M  (ImageNet 256^2, /2: 77 GFLOPs = GMACs)
#   U-ViT-H     29      1152  16     501 M  (ImageNet 256^2, /2: 133 GFLOPs = GMACs; 512^2 /4: the same 256 patches)
# Not modelled: U-ViT-L's optional 3x3 output conv (conv=True: 4*4*9+4 = 148 params, 0.15 M MACs at 32x32).
_UVIT_SIZES = {"S": (13, 512, 8), "M": (17, 768, 12), "L": (21, 1024, 16), "H": (29, 1152, 16)}


def _uvit(size: str, patch: int, res: int = 256) -> dict[str, Any]:
    blocks, hidden, heads = _UVIT_SIZES[size]
    name = f"U-ViT-{size}/{patch}" + ("" if res == 256 else f"@{res}")
    return {
        "name": name,
        "video": {"frames": 1, "height": res, "width": res, "fps": 1, "vae_stride_t": 1, "vae_stride_s": 8,
                  "latent_channels": 4, "patch_t": 1, "patch_h": patch, "patch_w": patch, "text_tokens": 0, "text_dim": 1},
        "model": {"name": name, "layers": blocks, "hidden": hidden, "heads": heads, "ffn_hidden": 4 * hidden,
                  "cross_attn": False, "adaln": "none", "attention": "full", "conditioning": "class",
                  "num_classes": 1000, "learn_sigma": False, "long_skip": True, "tokens_in_sequence": 2,
                  "qkv_bias": False, "time_mlp": False, "learned_pos_embed": True, "timestep_freq_dim": hidden},
    }


PRESETS: dict[str, dict[str, Any]] = {"soraplan-6B": SORAPLAN_6B}
for _s in _DIT_SIZES:
    for _p in (2, 4, 8):
        PRESETS[f"DiT-{_s}/{_p}"] = _dit(_s, _p)
for _s in _DIT_SIZES:
    for _p in (2, 4, 8):
        PRESETS[f"SiT-{_s}/{_p}"] = _sit(_s, _p)
for _s in ("S", "M", "L", "H"):
    for _p in (2, 4):
        PRESETS[f"U-ViT-{_s}/{_p}"] = _uvit(_s, _p)
PRESETS["U-ViT-L/4@512"] = _uvit("L", 4, 512)
PRESETS["U-ViT-H/4@512"] = _uvit("H", 4, 512)

PRESETS.update(CURRENT_PRESETS)

# One line per family for `--model` help and `soraplan estimate --help`.
FAMILIES: dict[str, str] = {
    "soraplan-6B": "the seed's 6B video DiT (default)",
    "DiT-{S,B,L,XL}/{2,4,8}": "Peebles & Xie 2023, ImageNet 256^2, adaLN-Zero (XL/2: 675 M, 118.6 GMACs)",
    "SiT-{S,B,L,XL}/{2,4,8}": "Ma et al. 2024: DiT backbone, interpolant loss (same cost as DiT)",
    "U-ViT-{S,M,L,H}/{2,4}[@512]": "Bao et al. 2023: tokens for time/class, long skips (H/2: 501 M, 133 GMACs)",
    "wan2.1-t2v-{1.3b,14b}, hunyuanvideo, cogvideox-{2b,5b}, open-sora-2.0, step-video-t2v, mochi-1, ltx-video, movie-gen-30b":
        "released video DiTs at their published geometry (`soraplan estimate presets`)",
    "llama-3-{8b,70b}, gpt-3-175b": "language models: causal attention, token embedding and logits",
}


def get_preset(name: str) -> dict[str, Any]:
    for key, value in PRESETS.items():
        if key.lower() == name.strip().lower():
            return value
    raise ValueError(f"model: unknown preset {name!r}; known: {', '.join(PRESETS)}")
