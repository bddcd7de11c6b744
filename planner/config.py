"""Build the one Spec: preset -> YAML file (--config) -> CLI flags, merged into one dict, validated once.

`build_spec` never uses `model_copy(update=...)` (it skips validation): every source is merged as plain
data and `Spec.model_validate` runs exactly once. Errors come back as `SpecError` with one line that names
the field and the rule.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import UserError
from .presets import get_preset
from .spec import Spec

# Top-level YAML sections that are not part of the Spec (read by launch/report).
EXTRA_SECTIONS = ("preset", "launch", "cluster", "report", "run")

# CLI flag -> one or more dotted Spec paths.
FLAG_PATHS: dict[str, tuple[str, ...]] = {
    "frames": ("video.frames",), "res": ("video.height", "video.width"), "height": ("video.height",),
    "width": ("video.width",), "fps": ("video.fps",), "vae_stride_t": ("video.vae_stride_t",),
    "vae_stride_s": ("video.vae_stride_s",), "latent_channels": ("video.latent_channels",),
    "causal_first_frame": ("video.causal_first_frame",),
    "patch_t": ("video.patch_t",), "patch_s": ("video.patch_h", "video.patch_w"), "text_tokens": ("video.text_tokens",),
    "text_dim": ("video.text_dim",), "tokens": ("video.tokens",),
    "layers": ("model.layers",), "hidden": ("model.hidden",), "heads": ("model.heads",), "ffn_hidden": ("model.ffn_hidden",),
    "cross_attn": ("model.cross_attn",), "adaln": ("model.adaln",), "attention": ("model.attention",),
    "attention_kernel": ("kernels.attention_kernel",), "dropout": ("kernels.dropout",),
    "precision": ("kernels.activation_dtype", "kernels.param_dtype"), "cpu_semantics": ("kernels.cpu_semantics",),
    "tp": ("parallel.tp",), "pp": ("parallel.pp",), "vpp": ("parallel.vpp",), "cp": ("parallel.cp",), "cp_comm": ("parallel.cp_comm",), "dp": ("parallel.dp",),
    "gpus": ("parallel.gpus",), "sequence_parallel": ("parallel.sequence_parallel",), "micro_batch": ("parallel.micro_batch",),
    "global_batch": ("parallel.global_batch",), "recompute": ("parallel.recompute",),
    "recompute_layers": ("parallel.recompute_layers",), "distributed_optimizer": ("parallel.distributed_optimizer",),
    "gpu": ("hardware.gpu",), "efficiency": ("hardware.efficiency",), "price": ("hardware.usd_per_gpu_hour",),
    "calibration": ("hardware.calibration",),
    "samples": ("training.samples",), "epochs": ("training.epochs",), "dataset": ("training.dataset",),
    "compare_gpus": ("training.compare_gpus",), "name": ("name",),
}


class SpecError(UserError):
    """A one-line, user-facing error about the spec or its inputs."""


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"--config: no such file: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SpecError(f"--config: {p} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise SpecError(f"--config: {p} must hold a mapping at the top level")
    return data


def flags_to_dict(flags: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None or key == "model":
            continue
        if key not in FLAG_PATHS:
            raise SpecError(f"--{key.replace('_', '-')}: not a spec flag")
        for dotted in FLAG_PATHS[key]:
            _set(out, dotted, value)
    return out


def format_validation_error(e: ValidationError) -> str:
    err = e.errors()[0]
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
    first = msg.split(":", 1)[0]
    if "." in first and " " not in first:  # the message already names its field
        return msg
    return f"{loc}: {msg}" if loc else msg


def merged_dict(preset: str | None = None, config: str | Path | None = None,
                flags: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The merged Spec dict and the YAML's non-spec sections (launch/cluster/report)."""
    flags = dict(flags or {})
    yaml_data = read_yaml(config) if config else {}
    extras = {k: yaml_data.pop(k) for k in list(yaml_data) if k in EXTRA_SECTIONS}
    preset_name = flags.pop("model", None) or extras.get("preset") or "soraplan-6B"
    try:
        base = get_preset(str(preset_name))
    except ValueError as e:
        raise SpecError(str(e)) from None
    merged = deep_merge(base, yaml_data)
    merged = deep_merge(merged, flags_to_dict(flags))
    _apply_dataset(merged, explicit_samples=("samples" in flags and flags["samples"] is not None)
                   or "samples" in (yaml_data.get("training") or {}))
    return merged, extras


def _apply_dataset(merged: dict[str, Any], explicit_samples: bool) -> None:
    training = merged.get("training") or {}
    name = training.get("dataset")
    if not name or explicit_samples:
        return
    from .datasets import get_dataset

    try:
        ds = get_dataset(str(name))
    except ValueError as e:
        raise SpecError(str(e)) from None
    training["samples"] = ds.samples
    merged["training"] = training


def build_spec(preset: str | None = None, config: str | Path | None = None,
               flags: dict[str, Any] | None = None) -> Spec:
    spec, _ = build_spec_and_extras(preset, config, flags)
    return spec


def build_spec_and_extras(preset: str | None = None, config: str | Path | None = None,
                          flags: dict[str, Any] | None = None) -> tuple[Spec, dict[str, Any]]:
    flags = dict(flags or {})
    if preset is not None and not flags.get("model"):
        flags["model"] = preset
    merged, extras = merged_dict(None, config, flags)
    try:
        return Spec.model_validate(merged), extras
    except ValidationError as e:
        raise SpecError(format_validation_error(e)) from None
    except ValueError as e:  # raised inside a 'before' validator
        raise SpecError(str(e)) from None
