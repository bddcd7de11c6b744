"""`soraplan estimate`: one spec -> sequence length, parameters, FLOPs, memory, step time, time to train."""

from typing import Annotated, Any

import typer

from .common import print_json, spec_from_flags, with_spec_options

app = typer.Typer(help="Estimate cost, memory and time to train for one spec.", invoke_without_command=True,
                  no_args_is_help=False)


@app.callback()
@with_spec_options
def estimate(ctx: typer.Context,
             json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
             spec_flags: Any = None) -> None:
    """Sequence length, parameters, FLOPs, per-GPU memory, step time and time to train for one spec.

    Example (the seed article): soraplan estimate --frames 960 --res 256 --tp 8
    """
    if ctx.invoked_subcommand is not None:
        return
    from soraplan.planner.estimate import estimate as run

    spec, _ = spec_from_flags(spec_flags)
    result = run(spec)
    if json_out:
        print_json(result)
    else:
        from .estimate_view import render

        render(result)
