"""`soraplan profile`: measured FLOPs, parameters and saved activations of any torch.nn.Module (meta device).

    soraplan profile --module pkg.mod:Class --config cfg.json --input "latents=1,4,16,32,32" --input "t=1:int64"
    soraplan profile --preset animatediff --frames 16 --res 256        # diffusers UNet presets, vs the DiTs

torch and diffusers are imported only when the command runs.
"""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import markup_literal, print_json, user_errors


@user_errors
def profile(
    module: Annotated[Optional[str], typer.Option("--module", help="IMPORTS AND RUNS CODE: the Python class pkg.mod:Class to import and build (your own code; only this flag names it, never a file)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="with --module: JSON object of constructor arguments (data only)")] = None,
    inputs: Annotated[Optional[list[str]], typer.Option("--input", "-i", help="forward argument NAME=D1,D2,...[:dtype] (repeat)")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="modelscope-t2v | animatediff | i2vgen-xl (needs diffusers)")] = None,
    frames: Annotated[int, typer.Option("--frames", help="preset: pixel frames per clip")] = 16,
    res: Annotated[int, typer.Option("--res", help="preset: square resolution in pixels")] = 256,
    batch: Annotated[int, typer.Option("--batch", help="preset: batch size")] = 1,
    dtype: Annotated[str, typer.Option("--dtype", help="float dtype of parameters and float inputs: fp32 | bf16 | fp16")] = "fp32",
    backward: Annotated[bool, typer.Option("--backward/--no-backward", help="also count forward+backward and saved activations")] = True,
    compare: Annotated[str, typer.Option("--compare", help="preset: planner DiTs to compare with (comma-separated)")] = "DiT-XL/2,soraplan-6B",
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Count FLOPs (FlopCounterMode), parameters and saved-activation bytes of a module built on the meta device.

    No weights are allocated and nothing runs on a device. --module imports the named Python module and runs its
    code (its top level, the class's constructor and forward): give it only code you trust. Example:
    soraplan profile --preset modelscope-t2v --frames 16 --res 256
    """
    from soraplan.validation import profile as P

    dt = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16",
          "float16": "float16"}.get(dtype.lower())
    if dt is None:
        raise _err("--dtype: must be fp32, bf16 or fp16")
    if (preset is None) == (module is None):
        raise _err("give either --preset NAME or --module pkg.mod:Class (with --config and --input)")
    for flag, value, high in (("--batch", batch, 4096), ("--frames", frames, 100_000), ("--res", res, 65_536)):
        if not 1 <= value <= high:
            raise _err(f"{flag}: must be from 1 to {high:,}, got {value}")
    if config is not None and module is None:
        raise _err("--config: constructor arguments go with --module; a --preset has its own")
    out: dict[str, Any]
    from .progress import LazyProgress

    bar = LazyProgress(0, enabled=not json_out, total=2)
    if preset is not None:
        with bar:
            bar.step(f"profiling {preset} on the meta device (torch + diffusers)")
            pre, prof = P.profile_preset(preset, frames, res, batch, dt, backward)
            dits = tuple(x.strip() for x in compare.split(",") if x.strip())
            bar.step("the planner's DiTs on the same clip")
            rows = P.dit_comparison(pre, prof, frames, res, dits) if dits and batch == 1 else []
        out = {"preset": pre["name"], "title": pre["title"], "source": pre["source"], "frames": frames, "res": res,
               **prof.as_dict(), "compare": rows}
    elif module is not None:  # exactly one of --preset / --module is given (checked above)
        if not inputs:
            raise _err("--input: give at least one NAME=D1,D2,... for the forward call")
        with bar:
            bar.step(f"building {module} on the meta device")
            kwargs = P.read_config(config)          # the files first: nothing is imported for a bad config
            specs = [P.parse_input(x) for x in inputs]
            cls = P.load_class(module)
            mod = P.build_meta(cls, kwargs, dt)
            bar.step(f"counting FLOPs and saved activations of {module}")
            prof = P.profile_module(mod, specs, dt, module, backward)
        out = prof.as_dict()
    if json_out:
        print_json(out)
    else:
        _render(out)


def _err(msg: str) -> Exception:
    from soraplan.planner.errors import UserError

    return UserError(msg)


def _render(r: dict[str, Any]) -> None:
    from .profile_view import render

    render(r)


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
