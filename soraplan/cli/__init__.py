"""The `soraplan` command: one Typer app, one module per command group.

Command modules import only light things at the top (typer, the planner); torch, megatron, plotly,
kubernetes and submitit are imported inside the functions that need them, so `soraplan estimate` stays fast.
"""

import typer

from . import estimate as _estimate

app = typer.Typer(
    name="soraplan",
    help="Compute planning and distributed-run orchestration for Sora-class video diffusion transformers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(_estimate.app, name="estimate")

# Command groups register themselves here (one module each).
for _mod in ("plan", "train", "validate", "launch", "runs", "report", "profile"):
    try:
        _m = __import__(f"soraplan.cli.{_mod}", fromlist=["register"])
    except ModuleNotFoundError as _e:  # a group not built yet
        if _e.name != f"soraplan.cli.{_mod}":
            raise
        continue
    _m.register(app)


def main() -> None:
    app()
