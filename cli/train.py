"""`soraplan train`: train the Megatron-core video DiT described by the spec flags (torchrun, srun or one process)."""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import spec_from_flags, with_spec_options

R = "Run"


@with_spec_options
def train(
    steps: Annotated[int, typer.Option("--steps", help="train until this step", rich_help_panel=R)] = 100,
    tiny: Annotated[bool, typer.Option("--tiny", help="shrink the model to seconds per step, same layout", rich_help_panel=R)] = False,
    run_dir: Annotated[Path, typer.Option("--run-dir", help="logs, status, checkpoints", rich_help_panel=R)] = Path("runs/train"),
    resume: Annotated[str, typer.Option("--resume", help="auto (latest complete checkpoint) | never | PATH", rich_help_panel=R)] = "auto",
    save_every: Annotated[int, typer.Option("--save-every", help="checkpoint every N steps (0: only at the end / on signal)", rich_help_panel=R)] = 50,
    keep_last: Annotated[int, typer.Option("--keep-last", help="complete checkpoints kept (>= 1)", rich_help_panel=R)] = 3,
    log_every: Annotated[int, typer.Option("--log-every", help="human log line every N steps (>= 1)", rich_help_panel=R)] = 10,
    data: Annotated[Optional[Path], typer.Option("--data", help="directory of *.safetensors latent shards (default: synthetic)", rich_help_panel=R)] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of weights, data order, noise, dropout", rich_help_panel=R)] = 1234,
    objective: Annotated[str, typer.Option("--objective", help="flow (rectified flow) | eps (DDPM)", rich_help_panel=R)] = "flow",
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (finite, > 0)", rich_help_panel=R)] = 1e-4,
    spec_flags: Any = None,
) -> None:
    """Train the video DiT. Example: soraplan train --tiny --steps 20 --run-dir runs/smoke

    Exit codes: 0 finished, 75 stopped by SIGTERM/SIGUSR2 after a checkpoint (resume with --resume auto),
    2 bad input. Logs: RUN_DIR/log.jsonl (JSON per step), RUN_DIR/status.json, RUN_DIR/done.
    """
    from soraplan.models.trainer import TrainArgs, check_args

    args = TrainArgs(steps=steps, run_dir=str(run_dir), resume=resume, save_every=save_every, keep_last=keep_last,
                     log_every=log_every, data=str(data) if data else None, seed=seed, objective=objective, lr=lr)
    check_args(args)                  # bad run options: one line before torch is imported
    spec, _ = spec_from_flags(spec_flags)
    from soraplan.planner.errors import UserError
    from soraplan.planner.trainable import train_refusal
    from soraplan.models.quiet import quiet_megatron

    quiet_megatron()
    from soraplan.models.tiny import shrink_spec
    from soraplan.models.trainer import Trainer

    if tiny:
        from pydantic import ValidationError

        from soraplan.planner.config import format_validation_error

        try:
            spec = shrink_spec(spec)
        except ValidationError as e:   # a layout the tiny sizes cannot take: one line, as for any spec
            raise UserError(f"--tiny: {format_validation_error(e)}") from None
    refusal = train_refusal(spec)
    if refusal is not None:
        raise UserError(refusal)
    raise typer.Exit(Trainer(spec, args).run())


def register(app: typer.Typer) -> None:
    app.command("train")(train)
