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
EXTRA_MAPPINGS = ("launch", "report")          # sections read by launch and report: each must be a mapping
# Spec sections: each must be a mapping in the YAML.
SPEC_SECTIONS = ("video", "model", "kernels", "parallel", "hardware", "training")

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
# the block vocabulary of current video DiTs and LLMs (planner/blocks.py): spec fields settable by name
FLAG_PATHS.update({key: (f"model.{key}",) for key in (
    "text", "single_layers", "ffn_type", "norm", "norm_affine", "cross_attn_norm", "qk_norm", "qk_norm_width",
    "kv_heads", "pos", "qkv_bias", "out_bias", "ffn_bias", "adaln_dim", "text_hidden", "text_ffn_hidden",
    "text_proj", "text_refiner_layers", "pooled_text_dim", "pooled_text", "guidance_embed", "cond_in_channels",
    "vocab_size", "tied_embeddings", "causal", "timestep_freq_dim", "time_mlp", "learned_pos_embed")})


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


def read_text(path: str | Path, field: str, hint: str = "", missing: str = "") -> str:
    """The UTF-8 text of a file the user named; every way it can fail is one UserError naming `field`.

    Args:
        path: the file.
        field: the flag or field that named it (e.g. "--config"), for the message.
        hint: appended to the "no such file" message.
        missing: the whole message for a missing file, in place of "FIELD: no such file: PATH".

    Returns:
        The file's text.
    """
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(missing or f"{field}: no such file: {p}{hint}") from None
    except IsADirectoryError:
        raise UserError(f"{field}: {p} is a directory, not a file") from None
    except PermissionError:
        raise UserError(f"{field}: permission denied reading {p}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{field}: {p} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"{field}: cannot read {p}: {e.strerror or e}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a `--config` YAML file; one SpecError for a missing, unreadable or malformed file."""
    import yaml

    p = Path(path)
    try:
        text = read_text(p, "--config")
    except UserError as e:
        raise SpecError(str(e)) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SpecError(f"--config: {p} is not valid YAML{where}") from None
    except (ValueError, TypeError, RecursionError):   # e.g. an unhashable key, a too deeply nested document
        raise SpecError(f"--config: {p} is not a YAML document soraplan can read") from None
    if not isinstance(data, dict):
        raise SpecError(f"--config: {p} must hold a mapping at the top level")
    for key, value in data.items():
        if not isinstance(key, str):
            raise SpecError(f"--config: {p}: top-level keys must be section names, got {key!r}")
        if key in SPEC_SECTIONS + EXTRA_MAPPINGS and value is not None and not isinstance(value, dict):
            raise SpecError(f"{key}: must be a mapping of fields, got {type(value).__name__} in {p}")
    preset = data.get("preset")
    if preset is not None and (not isinstance(preset, str) or not preset.strip()):
        raise SpecError(f"preset: must be a preset name, got {preset!r}")
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
    model_flag = flags.pop("model", None)
    if model_flag is not None and not str(model_flag).strip():
        raise SpecError("--model: a preset name is required, got an empty string")
    preset_name = model_flag or extras.get("preset") or "soraplan-6B"
    if len(str(preset_name)) > 128:
        raise SpecError(f"model: a preset name has at most 128 characters, got {len(str(preset_name)):,}")
    try:
        base = get_preset(str(preset_name))
    except ValueError as e:
        raise SpecError(str(e)) from None
    merged = deep_merge(base, yaml_data)
    flag_dict = flags_to_dict(flags)
    _keep_ratios(merged.get("model") or {}, flag_dict.get("model") or {})
    merged = deep_merge(merged, flag_dict)
    _apply_dataset(merged, explicit_samples=("samples" in flags and flags["samples"] is not None)
                   or "samples" in (yaml_data.get("training") or {}))
    return merged, extras


def _keep_ratios(before: dict[str, Any], model_flags: dict[str, Any]) -> None:
    """`--hidden` without `--ffn-hidden` keeps the preset's FFN ratio (ffn_hidden / hidden), and without
    `--heads` keeps its head dimension (hidden / heads); a width the ratio does not divide is refused.

    Args:
        before: the model section of the preset merged with the YAML file.
        model_flags: the model fields given as flags (completed in place).
    """
    if "hidden" not in model_flags:
        return
    new_h = int(model_flags["hidden"])
    old_h = int(before.get("hidden", 3072))
    if "ffn_hidden" not in model_flags and before.get("ffn_hidden") is not None and new_h > 0:
        ffn = int(before["ffn_hidden"]) * new_h
        if ffn % old_h:
            raise SpecError(f"model.ffn_hidden: hidden {new_h} x the preset's FFN ratio ({before['ffn_hidden']}/{old_h}) is not an "
                            "integer; give --ffn-hidden")
        model_flags["ffn_hidden"] = ffn // old_h
    if "heads" not in model_flags and new_h > 0:
        head_dim = old_h // int(before.get("heads", 24))
        if new_h % head_dim:
            raise SpecError(f"model.heads: hidden ({new_h}) % the preset's head dimension ({head_dim}) != 0; give --heads")
        model_flags["heads"] = new_h // head_dim


def _apply_dataset(merged: dict[str, Any], explicit_samples: bool) -> None:
    training = merged.get("training") or {}
    name = training.get("dataset")
    if name is not None and not str(name).strip():
        raise SpecError("training.dataset: a dataset name is required, got an empty string")
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
