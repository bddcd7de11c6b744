"""One row per model preset: parameters, default geometry and source (`soraplan estimate presets`)."""

from __future__ import annotations

from typing import Any

from .params import total_params
from .presets import PRESETS
from .presets_current import PRESET_SOURCES
from .spec import Spec


def _source(name: str) -> str:
    if name in PRESET_SOURCES:
        return PRESET_SOURCES[name]
    if name.startswith(("DiT-", "SiT-")):
        return "Peebles & Xie 2023, Table 1" if name.startswith("DiT-") else "Ma et al. 2024 (the DiT backbone)"
    if name.startswith("U-ViT-"):
        return "Bao et al. 2023, Table 1 and baofff/U-ViT configs"
    return "soraplan: the seed's 6B video DiT"


def preset_rows() -> list[dict[str, Any]]:
    """Every preset as a row.

    Returns:
        One dict per preset: name, params, geometry (H x W x frames, or the token count of a language
        model), tokens (the sequence the transformer sees), blocks, single-stream blocks, text mode and source.
    """
    rows = []
    for name, data in PRESETS.items():
        spec = Spec.model_validate(data)
        v, m = spec.video, spec.model
        geometry = f"{v.tokens} tokens" if v.tokens is not None else f"{v.height}x{v.width}x{v.frames}"
        rows.append({"name": name, "params": total_params(spec), "geometry": geometry, "tokens": spec.seq_len,
                     "blocks": m.layers, "single_blocks": m.single_layers,
                     "text": m.text_mode, "source": _source(name)})
    return rows
