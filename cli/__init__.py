"""The `soraplan` command: one Typer app, one module per command group.

Command modules import only light things at the top (typer, the planner); torch, megatron, plotly,
kubernetes and submitit are imported inside the functions that need them, so `soraplan estimate` stays fast.
`main` imports and builds only the command it runs (`COMMANDS` says which module registers it); `app`, the
whole command tree (help, completion, tests), is built on first use.
`--help` lists the commands in the order a user meets them (`ORDER`); `--version` prints the version;
`--install-completion` / `--show-completion` set up shell completion.
"""

import importlib
import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

# The order of `soraplan --help`: plan first, then measure, then run; commands not named here come last.
ORDER = ("estimate", "plan", "report", "validate", "train", "launch", "status", "logs", "cancel", "profile",
         "backtest", "doctor")


class OrderedGroup(TyperGroup):
    """The command group that lists its commands in `ORDER`."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(self.commands)
        rank = {n: i for i, n in enumerate(ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(ORDER)), names.index(n)))


# command -> the module of this package that registers it (`register(app)`; `estimate` is a Typer group)
COMMANDS = {"estimate": "estimate", "plan": "plan", "report": "report", "validate": "validate", "train": "train",
            "launch": "launch", "status": "runs", "logs": "runs", "cancel": "runs", "profile": "profile",
            "backtest": "backtest", "doctor": "doctor"}


def build_app(only: str | None = None) -> typer.Typer:
    """The `soraplan` Typer app with every command, or with only the command `only` (what `main` runs).

    Args:
        only: a key of `COMMANDS`, or None for the whole tree.
    Returns:
        The app.
    """
    app = typer.Typer(
        name="soraplan",
        cls=OrderedGroup,
        help="Compute planning and distributed-run orchestration for Sora-class video diffusion transformers.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=True,
    )
    app.callback()(_main)
    modules = [COMMANDS[only]] if only is not None else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        module = importlib.import_module(f"{__name__}.{name}")
        if name == "estimate":
            app.add_typer(module.app, name="estimate")
        else:
            module.register(app)   # each module registers its commands
    return app


def _version(value: bool) -> None:
    if value:
        from soraplan import __version__

        typer.echo(f"soraplan {__version__}")
        raise typer.Exit()


def _main(version: Annotated[bool, typer.Option("--version", help="print the version and exit", is_eager=True,
                                                callback=_version)] = False) -> None:
    """Compute planning and distributed-run orchestration for Sora-class video diffusion transformers."""


_APP: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    """`soraplan.cli.app`, the whole command tree, built on first use."""
    global _APP
    if name == "app":
        if _APP is None:
            _APP = build_app()
        return _APP
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command_of(args: list[str]) -> str | None:
    """The command `args` run when it is the first argument (so only it needs building), else None: options
    first (`--version`, `--help`), a bare `soraplan`, an unknown name or shell completion get the whole tree."""
    if not args or any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):
        return None
    return args[0] if args[0] in COMMANDS else None


def main(args: list[str] | None = None) -> None:
    """Run the `soraplan` command; exits with its status.

    click's own errors (unknown option, wrong type, missing value) print one line on stderr and exit 2, like
    every other bad input; `--help` and a bare group (its help) behave as usual.

    Args:
        args: the arguments (default: sys.argv[1:]).
    """
    import sys

    argv = sys.argv[1:] if args is None else list(args)
    only = _command_of(argv)
    command = typer.main.get_command(build_app(only) if only is not None else __getattr__("app"))
    try:
        rv = command.main(args=argv, prog_name="soraplan", standalone_mode=False)
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
