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


def main(args: list[str] | None = None) -> None:
    """Run the `soraplan` command; exits with its status.

    click's own errors (unknown option, wrong type, missing value) print one line on stderr and exit 2, like
    every other bad input; `--help` and a bare group (its help) behave as usual.

    Args:
        args: the arguments (default: sys.argv[1:]).
    """
    import sys

    command = typer.main.get_command(app)
    try:
        rv = command.main(args=args, prog_name="soraplan", standalone_mode=False)
    except typer.TyperException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # a bare group: its help is already printed
            sys.exit(2)
        ctx = getattr(e, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        line = " ".join(f"{where}{e.format_message()}".split())
        sys.stderr.write(f"error: {line}\n")
        sys.exit(getattr(e, "exit_code", 2))
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
