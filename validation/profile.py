"""Measured mode: FLOPs, parameters and saved-activation bytes of any torch.nn.Module, on the meta device.

`soraplan profile --module pkg.mod:Class --config cfg.json --input "latents=1,4,16,32,32" ...` builds the
module from a JSON config under `torch.device("meta")` (no weights, no memory), then:
  * parameters: sum of numel over `module.parameters()` (trainable separately);
  * FLOPs: torch's FlopCounterMode (1 MAC = 2 FLOPs; matmul/conv/SDPA only, norms and activations are 0,
    the same convention as the planner) for forward, and forward+backward (loss = sum of the outputs);
  * saved activations: every tensor autograd saves for backward (`saved_tensors_hooks`), counted once per
    storage (views share a storage) and excluding parameter storages - the bytes a training step holds
    between forward and backward for one micro-batch, before any recompute.
Presets (`--preset modelscope-t2v|animatediff|i2vgen-xl`) are the published diffusers configs kept as data in
`validation/unet_presets/*.json`; they need `diffusers` (pip install diffusers).

torch (and diffusers) are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soraplan.planner.errors import UserError

PRESET_DIR = Path(__file__).with_name("unet_presets")
_DTYPES = {"float32": "float32", "fp32": "float32", "float": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
           "fp16": "float16", "float16": "float16", "half": "float16", "int64": "int64", "long": "int64",
           "int32": "int32", "int": "int64", "bool": "bool"}


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str | None = None      # None: the profile's float dtype


@dataclass
class Profile:
    module: str
    params: int
    trainable_params: int
    forward_flops: int
    train_flops: int                      # forward + backward, measured
    saved_activation_bytes: int
    saved_tensors: int
    dtype: str
    inputs: dict[str, list[int]]
    forward_by_op: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"module": self.module, "params": self.params, "trainable_params": self.trainable_params,
                "flops": {"forward": self.forward_flops, "train": self.train_flops,
                          "backward_over_forward": (self.train_flops - self.forward_flops) / self.forward_flops
                          if self.forward_flops else None,
                          "forward_by_op": self.forward_by_op},
                "saved_activation_bytes": self.saved_activation_bytes,
                "saved_activation_gib": self.saved_activation_bytes / 1024**3,
                "saved_tensors": self.saved_tensors, "dtype": self.dtype, "inputs": self.inputs}


# --- parsing (pure) ------------------------------------------------------------------------------------------------
def parse_input(text: str) -> InputSpec:
    """'latents=1,4,16,32,32' | 'timestep=1:int64' | 'scale=:float32' (a 0-d tensor)."""
    if "=" not in text:
        raise UserError(f"--input: expected NAME=D1,D2,...[:dtype], got {text!r}")
    name, rest = text.split("=", 1)
    name = name.strip()
    if not name.isidentifier():
        raise UserError(f"--input: {name!r} is not a valid argument name")
    dtype = None
    if ":" in rest:
        rest, dt = rest.rsplit(":", 1)
        if dt.strip().lower() not in _DTYPES:
            raise UserError(f"--input {name}: unknown dtype {dt!r}; known: {', '.join(sorted(set(_DTYPES)))}")
        dtype = _DTYPES[dt.strip().lower()]
    dims: tuple[int, ...] = ()
    if rest.strip():
        try:
            dims = tuple(int(x) for x in rest.split(","))
        except ValueError:
            raise UserError(f"--input {name}: shape must be comma-separated integers, got {rest!r}") from None
        if any(d < 1 for d in dims):
            raise UserError(f"--input {name}: every dimension must be >= 1, got {rest!r}")
    return InputSpec(name, dims, dtype)


def load_class(path: str) -> Any:
    """'pkg.mod:Class' (or 'diffusers:UNet3DConditionModel') -> the class.

    This imports `pkg.mod` (running its top-level code) and the caller then calls the class. It is reached only
    from the `--module` flag, which the user types (their own code), and from the packaged UNet presets, which
    name only diffusers classes (`_preset_class`); never from a YAML or JSON file the user passes.
    """
    if ":" not in path:
        raise UserError(f"--module: expected pkg.mod:Class, got {path!r}")
    mod_name, _, attr = path.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        hint = " (pip install diffusers)" if mod_name.split(".")[0] == "diffusers" else ""
        raise UserError(f"--module: cannot import {mod_name!r}: {e}{hint}") from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"--module: {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def read_config(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from soraplan.planner.config import read_text

    p = Path(path)
    text = read_text(p, "--config")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--config: {p} is not valid JSON (line {e.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"--config: {p} must hold a JSON object of constructor arguments")
    return data


def list_presets() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(PRESET_DIR.glob("*.json"))}


def get_preset(name: str) -> dict[str, Any]:
    presets = list_presets()
    if name not in presets:
        raise UserError(f"--preset: unknown preset {name!r}; known: {', '.join(presets)}")
    return presets[name]


def preset_inputs(preset: dict[str, Any], frames: int, res: int, batch: int = 1) -> list[InputSpec]:
    """The preset's input shapes for a clip of `frames` pixel frames at `res`^2."""
    lat = preset["latent"]
    if frames % lat["vae_stride_t"] or res % lat["vae_stride_s"]:
        raise UserError(f"--frames/--res: {frames} frames at {res}px do not tile the VAE strides "
                        f"({lat['vae_stride_t']}x{lat['vae_stride_s']})")
    sub = {"batch": batch, "latent_frames": frames // lat["vae_stride_t"], "batch_frames": batch * (frames // lat["vae_stride_t"]),
           "latent_h": res // lat["vae_stride_s"],
           "latent_w": res // lat["vae_stride_s"]}
    return [parse_input(f"{k}={v.format(**sub)}") for k, v in preset["inputs"].items()]


# --- measuring (torch) ----------------------------------------------------------------------------------------------
def build_meta(cls: Any, config: dict[str, Any], dtype: str = "float32") -> Any:
    import torch

    if getattr(cls, "__module__", "").startswith("diffusers"):
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()   # the dtype-cast advice is for from_pretrained, not for a meta build
    try:
        with torch.device("meta"):
            module = cls(**config)
    except TypeError as e:
        raise UserError(f"--config: {getattr(cls, '__name__', cls)} rejected the config: {e}") from None
    return module.to(getattr(torch, dtype))


def _tensors(out: Any) -> list[Any]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "sample") and isinstance(out.sample, torch.Tensor):
        return [out.sample]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


def _make_inputs(inputs: list[InputSpec], dtype: str) -> dict[str, Any]:
    import torch

    made = {}
    for spec in inputs:
        dt = getattr(torch, spec.dtype or dtype)
        made[spec.name] = torch.zeros(spec.shape, dtype=dt, device="meta")
    return made


def profile_module(module: Any, inputs: list[InputSpec], dtype: str = "float32", name: str = "",
                   backward: bool = True) -> Profile:
    """Count parameters, forward and forward+backward FLOPs and saved-activation bytes of `module`."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    param_storages = {p.untyped_storage()._cdata for p in module.parameters()}

    # forward only (no autograd graph)
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            _call(module, _make_inputs(inputs, dtype))
        fwd = counter.get_total_flops()
        by_op = {str(k).split(".")[-1] if not hasattr(k, "__name__") else k.__name__: int(v)
                 for k, v in counter.get_flop_counts().get("Global", {}).items()}

    # forward + backward, with the saved tensors recorded once per storage
    seen: dict[int, int] = {}
    count = 0

    def pack(t: Any) -> Any:
        nonlocal count
        if isinstance(t, torch.Tensor):
            st = t.untyped_storage()
            key = st._cdata
            if key not in param_storages and key not in seen:
                seen[key] = st.nbytes()
                count += 1
        return t

    train = fwd
    saved = 0
    if backward and trainable:
        counter = FlopCounterMode(display=False)
        with counter:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = _call(module, _make_inputs(inputs, dtype))
            outs = [t for t in _tensors(out) if t.is_floating_point() and t.requires_grad]
            if not outs:
                raise UserError("--module: the forward returned no differentiable tensor; cannot count backward")
            loss = sum(t.float().sum() for t in outs)
            loss.backward()
        train = counter.get_total_flops()
        saved = sum(seen.values())
    return Profile(name or type(module).__name__, params, trainable, int(fwd), int(train), int(saved), count, dtype,
                   {s.name: list(s.shape) for s in inputs}, by_op)


def _call(module: Any, kwargs: dict[str, Any]) -> Any:
    try:
        return module(**kwargs)
    except TypeError as e:
        raise UserError(f"--input: the module's forward rejected the inputs: {e}") from None
    except RuntimeError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"--input: forward failed on these shapes: {msg}") from None


def _preset_class(preset: dict[str, Any]) -> Any:
    """The diffusers class a packaged preset names; any other module in a preset file is refused."""
    name = str(preset.get("class", ""))
    if not name.startswith("diffusers:"):
        raise UserError(f"--preset {preset.get('name')!r}: a preset names a diffusers class, got {name!r}")
    return load_class(name)


def profile_preset(name: str, frames: int, res: int, batch: int = 1, dtype: str = "float32",
                   backward: bool = True) -> tuple[dict[str, Any], Profile]:
    preset = get_preset(name)
    cls = _preset_class(preset)
    module = build_meta(cls, preset["config"], dtype)
    return preset, profile_module(module, preset_inputs(preset, frames, res, batch), dtype, preset["name"], backward)


def dit_comparison(preset: dict[str, Any], prof: Profile, frames: int, res: int,
                   dits: tuple[str, ...] = ("DiT-XL/2", "soraplan-6B")) -> list[dict[str, Any]]:
    """The planner's DiTs on the same clip: the UNet's latent geometry (VAE stride, channels) and text tokens.

    DiT-XL/2 (class-conditional image model) is applied per latent frame grid with patch 1x2x2 (full 3D attention
    over all frames' tokens); soraplan-6B keeps its 2x2x2 patch and cross-attends to the UNet's text tokens.
    """
    from soraplan.planner import build_spec
    from soraplan.planner.flops import flops
    from soraplan.planner.params import total_params
    from soraplan.planner.spec import Spec

    lat = preset["latent"]
    rows = []
    for dit in dits:
        flags = {"model": dit, "frames": frames, "res": res, "vae_stride_t": lat["vae_stride_t"],
                 "vae_stride_s": lat["vae_stride_s"], "latent_channels": lat["channels"]}
        d = build_spec(flags=flags).model_dump()
        if d["model"]["cross_attn"]:
            d["video"]["text_tokens"], d["video"]["text_dim"] = lat["text_tokens"], lat["text_dim"]
        try:
            spec = Spec.model_validate(d)
        except ValueError as e:
            raise UserError(f"--frames/--res: {dit} cannot tile this clip: {e}") from None
        f = flops(spec)
        rows.append({"model": dit, "params": total_params(spec), "tokens": spec.seq_len, "forward_flops": f.forward,
                     "train_flops": f.train,
                     "unet_over_dit_forward": prof.forward_flops / f.forward if f.forward else math.nan})
    return rows
