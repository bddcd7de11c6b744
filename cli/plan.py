"""`soraplan plan`: search every parallel layout for each GPU count, rank them, and budget the training.

Example (40 s 256x256 clips): soraplan plan --frames 960 --res 256 --gpu a100-80g --gpus 200,300,400
Spec flags as in `soraplan estimate`; the parallel flags given (--tp, --pp, --vpp, --cp, --micro-batch,
--recompute, --sequence-parallel, --distributed-optimizer, --global-batch) pin that dimension of the search.
"""


from typing import Annotated, Any, Optional

import typer

from .common import check_search_flags, parse_gpu_counts, parse_ints, print_json, search_options, spec_from_flags, with_spec_options
from .progress import LazyProgress


@with_spec_options
def plan(gpus: Annotated[Optional[str], typer.Option("--gpus", help="GPU counts to plan for, comma list (default: --compare-gpus, 200,300,400)", rich_help_panel="Search")] = None,
         objective: Annotated[str, typer.Option("--objective", help="time | cost | deadline", rich_help_panel="Search")] = "time",
         deadline_days: Annotated[Optional[float], typer.Option("--deadline-days", help="with --objective deadline: the fewest GPUs that finish within this", rich_help_panel="Search")] = None,
         allow_window: Annotated[bool, typer.Option("--allow-window", help="also search window attention (changes the model)", rich_help_panel="Search")] = False,
         headroom: Annotated[float, typer.Option("--headroom", help="memory headroom kept free", rich_help_panel="Search")] = 0.10,
         max_tp_in_node: Annotated[Optional[int], typer.Option("--max-tp-in-node", help="largest TP (default: GPUs per node; larger is rejected)", rich_help_panel="Search")] = None,
         global_batch_range: Annotated[Optional[str], typer.Option("--global-batch-range", help="LOW,HIGH samples per step (default 64,1024 or --global-batch)", rich_help_panel="Search")] = None,
         top: Annotated[int, typer.Option("--top", help="layouts shown per GPU count", rich_help_panel="Search")] = 5,
         curriculum: Annotated[Optional[str], typer.Option("--curriculum", help="YAML file of training stages, or 'default'", rich_help_panel="Search")] = None,
         gemm_efficiency: Annotated[Optional[float], typer.Option("--gemm-efficiency", help="override the table's GEMM efficiency", rich_help_panel="Search")] = None,
         attention_efficiency: Annotated[Optional[float], typer.Option("--attention-efficiency", help="override the attention-kernel efficiency", rich_help_panel="Search")] = None,
         hbm_efficiency: Annotated[Optional[float], typer.Option("--hbm-efficiency", help="override the achieved HBM bandwidth fraction", rich_help_panel="Search")] = None,
         sensitivity: Annotated[bool, typer.Option("--sensitivity/--no-sensitivity", help="one-assumption-at-a-time list", rich_help_panel="Search")] = True,
         json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
         spec_flags: Any = None) -> None:
    """The fastest layouts that fit for each GPU count, why the winner wins, and the training budget.

    Example (40 s 256x256 clips): soraplan plan --frames 960 --res 256 --gpu a100-80g --gpus 200,300,400
    """
    from pydantic import ValidationError

    from soraplan.planner.config import format_validation_error
    from soraplan.planner.errors import UserError
    from soraplan.planner.plan import plan as run
    from soraplan.planner.spec import spec_with

    spec, _ = spec_from_flags(spec_flags)
    check_search_flags(spec, deadline_days=deadline_days, headroom=headroom, max_tp_in_node=max_tp_in_node, top=top)
    over = {k: v for k, v in (("gemm_efficiency", gemm_efficiency), ("attention_efficiency", attention_efficiency),
                              ("hbm_efficiency", hbm_efficiency)) if v is not None}
    if over:
        try:
            spec = spec_with(spec, hardware=over)
        except ValidationError as e:
            raise UserError(f"efficiency override: {format_validation_error(e)}") from None
        except ValueError as e:
            raise UserError(f"efficiency override: {e}") from None
    gbr = None
    if global_batch_range:
        lo_hi = parse_ints(global_batch_range, "--global-batch-range")
        if len(lo_hi) != 2:
            raise UserError(f"--global-batch-range: LOW,HIGH expected, got {global_batch_range!r}")
        gbr = (lo_hi[0], lo_hi[1])
    options = search_options(spec_flags, headroom=headroom, max_tp_in_node=max_tp_in_node, global_batch_range=gbr,
                             allow_window=allow_window)
    counts = parse_gpu_counts(gpus) if gpus else None
    bar = LazyProgress(enabled=not json_out)
    try:
        result = run(spec, counts, objective=objective, deadline_days=deadline_days, options=options, top=top,
                     curriculum=curriculum, sensitivity=sensitivity, progress=bar)
    finally:
        bar.close()
    if json_out:
        print_json(result.to_json())
    else:
        from .plan_view import render

        render(result)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
