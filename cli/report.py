"""`soraplan report`: the HTML capacity report for managers (one self-contained file, plotly.js inlined).

    soraplan report --config run.yaml -o capacity.html [--name RUN] [--gpus 200,300,400] [--deadline-days 60]
                    [--validation validation.json]

Numbers: `soraplan.planner.report_data.gather` (the planner). Page: `report_view.render_html` (plotly is
imported there, inside the function). This module only parses flags, reads the validation file (into a typed
`Validation`, the one place its JSON is read) and writes the page (temp file in the target directory, then rename).
"""


import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .common import check_search_flags, fail, parse_gpu_counts, search_options, spec_from_flags, with_spec_options

if TYPE_CHECKING:
    from soraplan.planner.report_data import Validation


def read_validation(path: Optional[Path]) -> "Optional[Validation]":
    """The `soraplan validate --json` output in `path` as a Validation, or None when no file is named.

    Args:
        path: the file, or None.

    Returns:
        The Validation; a missing, unreadable or malformed file is a one-line error naming --validation.
    """
    from soraplan.planner.report_data import normalize_validation

    if path is None:
        return None
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"--validation: no such file: {p}")
    except (OSError, UnicodeDecodeError) as e:
        fail(f"--validation: cannot read {p}: {e}")
    except ValueError:
        fail(f"--validation: {p} is not JSON (expected `soraplan validate --json` output)")
    return normalize_validation(raw)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temp file next to `path`, then rename over it (readers never see half a report)."""
    path = path.resolve()
    check_output(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        fail(f"--output: cannot write in {path.parent}: {e.strerror or e}")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        fail(f"--output: cannot write {path}: {e.strerror or e}")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output(path: Path) -> None:
    """Fail with one line unless `path` can be written: its directory exists and takes a new file, and `path`
    itself is not a directory. Checked before the search, so a bad -o costs nothing."""
    path = path.resolve()
    if path.is_dir():
        fail(f"--output: {path} is a directory; name the HTML file to write")
    if not path.parent.is_dir():
        fail(f"--output: directory does not exist: {path.parent}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
    except OSError as e:
        fail(f"--output: cannot write in {path.parent}: {e.strerror or e}")
    os.close(fd)
    Path(probe).unlink(missing_ok=True)


PANEL = "Report"


@with_spec_options
def report(output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write", rich_help_panel=PANEL)] = Path("capacity.html"),
           gpus: Annotated[Optional[str], typer.Option("--gpus", help="GPU counts to compare, e.g. 200,300,400 "
                                                       "(default: training.compare_gpus)", rich_help_panel=PANEL)] = None,
           deadline_days: Annotated[Optional[float], typer.Option("--deadline-days", help="draw a deadline and "
                                                                  "flag counts that miss it", rich_help_panel=PANEL)] = None,
           objective: Annotated[Optional[str], typer.Option("--objective", help="time (default) | cost | deadline",
                                                            rich_help_panel=PANEL)] = None,
           validation: Annotated[Optional[Path], typer.Option("--validation", help="`soraplan validate --json` output "
                                                              "(default: the YAML's report.validation)", rich_help_panel=PANEL)] = None,
           curriculum: Annotated[Optional[str], typer.Option("--curriculum", help="YAML file of training stages, or "
                                                             "'default' (as in soraplan plan)", rich_help_panel=PANEL)] = None,
           allow_window: Annotated[bool, typer.Option("--allow-window", help="also search window attention "
                                                      "(changes the model)", rich_help_panel=PANEL)] = False,
           headroom: Annotated[float, typer.Option("--headroom", help="memory headroom kept free (0.10)",
                                                   rich_help_panel=PANEL)] = 0.10,
           max_tp_in_node: Annotated[Optional[int], typer.Option("--max-tp-in-node", help="largest TP (default: GPUs "
                                                                 "per node)", rich_help_panel=PANEL)] = None,
           spec_flags: Any = None) -> None:
    """Write the one-file HTML capacity report (summary, charts, layouts, risks, assumptions).

    Example: soraplan report --frames 960 --res 256 --gpus 200,300,400 --deadline-days 60 -o capacity.html
    """
    from soraplan.planner.report_data import gather

    from .progress import LazyProgress
    from .report_view import render_html

    check_output(output)  # before the search, not after it
    spec, extras = spec_from_flags(spec_flags)
    section = extras.get("report") or {}
    if not isinstance(section, dict):
        fail("report: the YAML's report section must be a mapping")
    counts = parse_gpu_counts(gpus) if gpus is not None else section.get("gpus")
    if gpus is None and counts is not None:                 # from the YAML's report section
        if isinstance(counts, list) and counts:
            counts = ",".join(str(c) for c in counts)
        if not isinstance(counts, (str, int)) or isinstance(counts, bool):
            fail(f"report.gpus: GPU counts expected (e.g. [200, 300, 400]), got {counts!r}")
        counts = parse_gpu_counts(str(counts))
    if deadline_days is None:
        deadline_days = section.get("deadline_days")
    check_search_flags(spec, deadline_days=deadline_days, headroom=headroom, max_tp_in_node=max_tp_in_node)
    objective = objective or section.get("objective")
    curriculum = curriculum or section.get("curriculum")
    for key, value in (("objective", objective), ("curriculum", curriculum), ("validation", section.get("validation"))):
        if value is not None and not isinstance(value, str):
            fail(f"report.{key}: a string expected, got {value!r}")
    val_path = validation
    if val_path is None and section.get("validation") is not None:
        val_path = Path(str(section["validation"]))
        if not val_path.is_absolute() and spec_flags.get("config") is not None:
            val_path = Path(spec_flags["config"]).parent / val_path  # relative to the YAML file
    options = search_options(spec_flags, headroom=headroom, allow_window=allow_window, max_tp_in_node=max_tp_in_node)
    bar = LazyProgress()
    try:
        data = gather(spec, gpu_counts=counts, deadline_days=deadline_days, validation=read_validation(val_path),
                      objective=objective, options=options, curriculum=curriculum, progress=bar)
        bar.note("building the HTML page (charts)")
        command = "soraplan " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["report"] else ""
        page = render_html(data, command=command)
    finally:
        bar.close()
    write_atomic(output, page)
    s = data["summary"]
    size_mb = len(page.encode()) / 1e6
    if s:
        said = (f"wrote {output} ({size_mb:.1f} MB): {s['gpus_used']} x {s['gpu']}, {s['days']:.1f} days, "
                f"{s['gpu_hours']:,.0f} GPU-hours, ${s['cost_usd']:,.0f}")
    else:
        said = f"wrote {output} ({size_mb:.1f} MB): no layout fits at the GPU counts asked for"
    from .table_view import console

    console(stderr=True).print(said, markup=False, highlight=False)  # wrapped to the terminal


def register(app: typer.Typer) -> None:
    app.command("report", help="Write the HTML capacity report for managers (one self-contained file).")(report)
