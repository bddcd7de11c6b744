"""`soraplan status | logs RUN | cancel RUN`: flags in, one launch/runs.py call, the result rendered."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import literal, markup_literal, print_json, user_errors

LedgerOpt = Annotated[Optional[Path], typer.Option("--ledger", help="ledger SQLite file")]


@user_errors
def status(run: Annotated[Optional[str], typer.Argument(help="run name (all runs if omitted)")] = None,
           ledger: LedgerOpt = None,
           json_out: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """Show runs and their state (asks the cluster for live state); pending reasons are explained."""
    from soraplan.launch.runs import run_statuses

    from .runs_view import render_status

    rows = run_statuses(run, ledger)
    if json_out:
        print_json([x.to_json() for x in rows])
        return
    render_status(rows)


@user_errors
def logs(run: Annotated[str, typer.Argument(help="run name")],
         follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing as the log grows")] = False,
         rank: Annotated[Optional[int], typer.Option("--rank", min=0, help="Kubernetes: the pod of this node rank (0)")] = None,
         all_pods: Annotated[bool, typer.Option("--all", help="Kubernetes: every pod's log, in node-rank order")] = False,
         ledger: LedgerOpt = None) -> None:
    """Print the run's current log."""
    from soraplan.launch.runs import print_logs

    if rank is None and not all_pods:
        print_logs(run, follow, ledger)
    else:
        print_logs(run, follow, ledger, rank=rank, all_pods=all_pods)


@user_errors
def cancel(run: Annotated[str, typer.Argument(help="run name")], ledger: LedgerOpt = None) -> None:
    """Cancel the run's jobs (Slurm scancel / Kubernetes delete)."""
    from soraplan.launch.runs import cancel_run

    cancel_run(run, ledger)
    typer.echo(f"run {literal(run)}: cancelled")


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("cancel")(cancel)
