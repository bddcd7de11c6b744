"""The `soraplan` command: one Typer app, one module per command group.

Command modules import only light things at the top (typer, the planner); torch, megatron, plotly,
kubernetes and submitit are imported inside the functions that need them, so `soraplan estimate` stays fast.
"""

import typer

from . import estimate, launch, plan, profile, report, runs, train, validate

app = typer.Typer(
    name="soraplan",
    help="Compute planning and distributed-run orchestration for Sora-class video diffusion transformers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(estimate.app, name="estimate")
for _group in (plan, train, validate, launch, runs, report, profile):   # each module registers its commands
    _group.register(app)


def main() -> None:
    app()
