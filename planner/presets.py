"""Named presets: partial Spec dicts that `--model NAME` (or `preset:` in YAML) starts from.

Each preset is data, merged under the YAML file and the CLI flags (see config.py). Published sizes are
written next to each entry so a reader can check them.
"""

from __future__ import annotations

from typing import Any

# soraplan-6B: the seed's "6B video transformer". 40 x 3072, 24 heads (head dim 128), FFN 4x,
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


PRESETS: dict[str, dict[str, Any]] = {"soraplan-6B": SORAPLAN_6B}
for _s in _DIT_SIZES:
    for _p in (2, 4, 8):
        PRESETS[f"DiT-{_s}/{_p}"] = _dit(_s, _p)


def get_preset(name: str) -> dict[str, Any]:
    for key, value in PRESETS.items():
        if key.lower() == name.strip().lower():
            return value
    raise ValueError(f"model: unknown preset {name!r}; known: {', '.join(PRESETS)}")
