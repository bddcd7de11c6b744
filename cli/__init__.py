"""The `soraplan` command: one Typer app, one module per command group.

Command modules import only light things at the top (typer, the planner); torch, megatron, plotly,
kubernetes and submitit are imported inside the functions that need them, so `soraplan estimate` stays fast.
`--help` lists the commands in the order a user meets them (`ORDER`); `--version` prints the version;
`--install-completion` / `--show-completion` set up shell completion.
"""

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from . import backtest, doctor, estimate, launch, plan, profile, report, runs, train, validate

# The order of `soraplan --help`: plan first, then measure, then run; commands not named here come last.
ORDER = ("estimate", "plan", "report", "validate", "train", "launch", "status", "logs", "cancel", "profile",
         "backtest", "doctor")


class OrderedGroup(TyperGroup):
    """The command group that lists its commands in `ORDER`."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(self.commands)
        rank = {n: i for i, n in enumerate(ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(ORDER)), names.index(n)))


app = typer.Typer(
    name="soraplan",
    cls=OrderedGroup,
    help="Compute planning and distributed-run orchestration for Sora-class video diffusion transformers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        from soraplan import __version__

        typer.echo(f"soraplan {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", help="print the version and exit", is_eager=True,
                                                callback=_version)] = False) -> None:
    """Compute planning and distributed-run orchestration for Sora-class video diffusion transformers."""


app.add_typer(estimate.app, name="estimate")
for _group in (plan, train, validate, launch, runs, report, profile, backtest, doctor):   # each module registers its commands
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
