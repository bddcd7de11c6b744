"""`soraplan validate`: the planner's numbers against the real Megatron-core DiT, measured.

Default: the validation matrix (validation/measure_matrix.py) on CPU, the 6B on the meta device and TP=2 in two
gloo processes. With spec flags (or --config): that one spec. `--device cuda`: the GPU run (memory, step
time, achieved TFLOP/s) that writes a calibration file; its progress goes to stderr (under --json too) and
`--results-out` keeps the JSON so far after every layout. Exit 1 when any comparison is out of tolerance.
"""


import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import fail, print_json, require, spec_from_flags, with_spec_options


def _machine() -> dict[str, Any]:
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(terse=True)}


def render_table(rows: list, errors: list[dict], title: str) -> None:
    """The comparison table on stdout (cli/validate_view.py)."""
    from .validate_view import render_table as render

    render(rows, errors, title)


def validate(
    quick: Annotated[bool, typer.Option("--quick", help="a short subset of the matrix")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu (the matrix, meta for the 6B) | cuda (GPU memory/time run)")] = "cpu",
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    calibration_out: Annotated[Optional[Path], typer.Option("--calibration-out", help="--device cuda: write the calibration JSON here")] = None,
    steps: Annotated[int, typer.Option("--steps", help="--device cuda: timed training steps")] = 5,
    results_out: Annotated[Optional[Path], typer.Option("--results-out", help="--device cuda: write the JSON result here after every layout (atomically)")] = None,
    scale: Annotated[str, typer.Option("--scale", help="small (the matrix) | 6b (the 6B per rank at the seed's layouts, fake process group, a few minutes)")] = "small",
    spec_flags: Any = None,
) -> None:
    """Measure the real model (parameters, FLOPs, saved activations, TP ranks) and compare with the planner.

    Examples: soraplan validate | soraplan validate --quick --json | soraplan validate --model DiT-XL/2 |
    soraplan validate --device cuda --calibration-out calib.json | soraplan validate --scale 6b
    """
    if device not in ("cpu", "cuda"):
        fail(f"--device: 'cpu' or 'cuda', got {device!r}")
    if scale not in ("small", "6b"):
        fail(f"--scale: 'small' or '6b', got {scale!r}")
    require("torch", "megatron.core")
    given = {k: v for k, v in (spec_flags or {}).items() if v is not None}
    if scale == "6b" and (given or quick or device != "cpu"):
        fail("--scale 6b: measures the seed's own layouts; no spec flags, --quick or --device cuda with it")
    if device == "cuda":
        _cuda(given, spec_flags, calibration_out, results_out, steps, json_out)
        return
    if calibration_out is not None:
        fail("--calibration-out: only with --device cuda (a calibration is measured on a GPU)")
    if results_out is not None:
        fail("--results-out: only with --device cuda (the CPU matrix prints its JSON with --json)")
    warnings_off()
    from soraplan.validation import measure_matrix as mm

    from .progress import LazyProgress

    if scale == "6b":
        from soraplan.validation import measure_fake

        with LazyProgress(0, enabled=not json_out, total=1) as bar:
            rows, errors = measure_fake.run_seed(progress=lambda name: bar.step(f"measuring {name}"))
        title = "soraplan validate --scale 6b: the 6B per rank (fake process group, meta device)"
    elif given:
        spec, _ = spec_from_flags(spec_flags)
        with LazyProgress(0, enabled=not json_out, total=1) as bar:
            rows, errors = mm.run_spec(spec, progress=lambda name: bar.step(f"measuring {name}"))
        title = f"soraplan validate: {spec.name}"
    else:
        selected = mm.cases(quick)
        steps = sum(1 for c in selected if c.device != "tp") + any(c.device == "tp" for c in selected)
        with LazyProgress(0, enabled=not json_out, total=steps) as bar:
            rows, errors = mm.run_cases(selected, progress=lambda name: bar.step(f"measuring {name}"))
        title = "soraplan validate: planner vs the Megatron-core DiT" + (" (quick)" if quick else "")
    failed = sum(1 for r in rows if not r.ok) + len(errors)
    if json_out:
        print_json({"machine": _machine(), "device": "cpu", "quick": quick, "rows": [r.as_dict() for r in rows],
                    "errors": errors, "failed": failed, "ok": failed == 0})
    else:
        render_table(rows, errors, title)
    if failed:
        raise typer.Exit(1)


def warnings_off() -> None:
    """Megatron warns at import about Transformer Engine / Apex being absent: not news here."""
    from soraplan.models.quiet import quiet_megatron

    quiet_megatron()


def _cuda_document(result: dict[str, Any]) -> dict[str, Any]:
    """The `--device cuda` JSON object: machine, rows, calibration, failed, ok, complete, soraplan_version."""
    from soraplan import __version__

    rows = result["rows"]
    failed = sum(1 for r in rows if not r.ok)
    return {"machine": _machine(), "device": "cuda", "complete": result["complete"],
            "rows": [r.as_dict() for r in rows], "calibration": result["calibration"], "failed": failed,
            "ok": failed == 0, "soraplan_version": __version__}


def _cuda(given: dict, spec_flags: Any, calibration_out: Optional[Path], results_out: Optional[Path], steps: int,
          json_out: bool) -> None:
    """The GPU run. Progress goes to stderr always (under --json too); stdout gets the table or the JSON."""
    import torch

    if not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is visible on this machine (torch.cuda.is_available() is False)")
    warnings_off()
    from soraplan.validation import measure_gpu

    def say(line: str) -> None:
        sys.stderr.write(f"gpu: {datetime.datetime.now(datetime.timezone.utc):%H:%M:%S} {line}\n")
        sys.stderr.flush()

    def save(result: dict[str, Any]) -> None:
        if results_out is not None:
            measure_gpu.write_json_atomic(results_out, _cuda_document(result))
        if calibration_out is not None and result["calibration"] is not None:
            measure_gpu.write_calibration(calibration_out, result["calibration"])
        say(f"results so far written ({'complete' if result['complete'] else 'partial'})")

    spec = spec_from_flags(spec_flags)[0] if given else None
    try:
        result = measure_gpu.run(spec, steps=steps, progress=say, on_result=save)
    except measure_gpu.GpuValidationError as e:
        fail(str(e))
    doc = _cuda_document(result)
    if json_out:
        print_json(doc)
    else:
        render_table(result["rows"], [], f"soraplan validate --device cuda: {result['calibration']['device']}")
        if calibration_out is not None:
            sys.stdout.write(f"calibration written to {calibration_out}\n")
    if doc["failed"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("validate")(with_spec_options(validate))
