"""`soraplan status | logs RUN | cancel RUN`: read the run ledger and ask the run's backend."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import print_json, user_errors

LedgerOpt = Annotated[Optional[Path], typer.Option("--ledger", help="ledger SQLite file")]


@user_errors
def status(run: Annotated[Optional[str], typer.Argument(help="run name (all runs if omitted)")] = None,
           ledger: LedgerOpt = None,
           json_out: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """Show runs and their state (asks the cluster for live state)."""
    from rich.console import Console
    from rich.table import Table

    from soraplan.launch.backends import get_backend
    from soraplan.launch.ledger import Ledger

    rows = []
    with Ledger(ledger) as book:
        records = [book.get(run)] if run else list(book.all())
        for r in records:
            live = get_backend(r.backend).status(r)
            if live.get("state") and live["state"] != r.state:
                book.set_state(r.name, live["state"], str(live.get("detail", "")))
            rows.append({"name": r.name, "backend": r.backend, "state": live.get("state", r.state),
                         "detail": live.get("detail", ""), "job_ids": r.job_ids, "run_dir": str(r.run_dir)})
    if json_out:
        print_json(rows)
        return
    t = Table("run", "backend", "state", "jobs", "detail", "run dir")
    for x in rows:
        t.add_row(x["name"], x["backend"], x["state"], ",".join(x["job_ids"]), str(x["detail"]), x["run_dir"])
    Console().print(t)


@user_errors
def logs(run: Annotated[str, typer.Argument(help="run name")],
         follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing as the log grows")] = False,
         ledger: LedgerOpt = None) -> None:
    """Print the run's current log."""
    from soraplan.launch.backends import get_backend
    from soraplan.launch.ledger import Ledger

    with Ledger(ledger) as book:
        r = book.get(run)
    get_backend(r.backend).logs(r, follow)


@user_errors
def cancel(run: Annotated[str, typer.Argument(help="run name")], ledger: LedgerOpt = None) -> None:
    """Cancel the run's jobs (Slurm scancel / Kubernetes delete)."""
    from soraplan.launch.backends import get_backend
    from soraplan.launch.ledger import Ledger

    with Ledger(ledger) as book:
        r = book.get(run)
        get_backend(r.backend).cancel(r)
        book.set_state(run, "cancelled", "by soraplan cancel")
    typer.echo(f"run {run}: cancelled")


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("cancel")(cancel)
