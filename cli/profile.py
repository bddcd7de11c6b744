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
    if preset is not None:
        pre, prof = P.profile_preset(preset, frames, res, batch, dt, backward)
        dits = tuple(x.strip() for x in compare.split(",") if x.strip())
        rows = P.dit_comparison(pre, prof, frames, res, dits) if dits and batch == 1 else []
        out = {"preset": pre["name"], "title": pre["title"], "source": pre["source"], "frames": frames, "res": res,
               **prof.as_dict(), "compare": rows}
    elif module is not None:  # exactly one of --preset / --module is given (checked above)
        if not inputs:
            raise _err("--input: give at least one NAME=D1,D2,... for the forward call")
        kwargs = P.read_config(config)          # the files first: nothing is imported for a bad config
        specs = [P.parse_input(x) for x in inputs]
        cls = P.load_class(module)
        mod = P.build_meta(cls, kwargs, dt)
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
    from rich.console import Console
    from rich.table import Table

    from soraplan.planner.estimate import human

    c = Console()
    c.print(f"[bold]{markup_literal(r.get('title', r['module']))}[/]  inputs {markup_literal(r['inputs'])}  dtype {r['dtype']}")
    t = Table(title="Measured on the meta device (FlopCounterMode; 1 MAC = 2 FLOPs)", title_justify="left")
    t.add_column("quantity"); t.add_column("value", justify="right")
    t.add_row("parameters", f"{r['params']:,} ({human(r['params'])})")
    t.add_row("forward FLOPs", human(r["flops"]["forward"]))
    t.add_row("forward + backward FLOPs", human(r["flops"]["train"]))
    t.add_row("saved activations (per micro-batch)", f"{r['saved_activation_gib']:.2f} GiB in {r['saved_tensors']:,} tensors")
    c.print(t)
    if r.get("compare"):
        t = Table(title=f"Same clip ({r['frames']} frames at {r['res']}^2) in the planner's DiTs", title_justify="left")
        for col in ("model", "params", "tokens", "forward FLOPs", "train FLOPs", "UNet / DiT forward"):
            t.add_column(col, justify="right")
        t.add_row(r["preset"], human(r["params"]), "-", human(r["flops"]["forward"]), human(r["flops"]["train"]), "1.00")
        for row in r["compare"]:
            t.add_row(row["model"], human(row["params"]), f"{row['tokens']:,}", human(row["forward_flops"]),
                      human(row["train_flops"]), f"{row['unet_over_dit_forward']:.2f}")
        c.print(t)


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
