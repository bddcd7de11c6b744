"""Golden: the report's summary numbers are the planner's, equal to `soraplan plan --json` / `estimate --json`.

The page carries its summary as JSON (`<script id="soraplan-summary">`) next to the rendered tiles; both are
checked against what the JSON commands print for the same flags.
"""

import json
import re

import pytest
from typer.testing import CliRunner

from soraplan.cli import app
from soraplan.cli.report_view import f_days, f_int, f_usd

SEED = ["--frames", "960", "--res", "256"]


def cli_json(*args):
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def report_summary(tmp_path, *args):
    out = tmp_path / "capacity.html"
    r = CliRunner().invoke(app, ["report", *args, "-o", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="soraplan-summary">(.*?)</script>', text, re.S)
    return json.loads(m.group(1)), text


def assert_tiles(text, s):
    assert f'<div class="v">{s["gpus_used"]:,} × {s["gpu"]}</div>' in text   # the GPUs the layout uses
    assert f'<div class="v">{f_days(s["days"])} days</div>' in text
    assert f'<div class="v">{f_int(s["gpu_hours"])}</div>' in text
    assert f'<div class="v">{f_usd(s["cost_usd"])}</div>' in text


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    args = [*SEED, "--gpus", "200,300,400"]
    s, text = report_summary(tmp_path_factory.mktemp("golden"), *args)
    return s, text, cli_json("plan", *args, "--json")


def test_summary_equals_plan_json(golden):
    """The recommendation is `soraplan plan --json`'s best, number for number, in the JSON and in the tiles."""
    s, text, p = golden
    best = p["best"]
    assert (s["gpus"], s["gpus_used"]) == (best["gpus"], best["gpus_used"])
    for k in ("days", "gpu_hours", "cost_usd"):
        assert s[k] == best["train"][k], k
    assert s["step_s"] == best["step"]["time_s"] and s["mfu"] == best["step"]["mfu"]
    for k in ("tp", "pp", "vpp", "cp", "dp", "micro_batch", "global_batch", "sequence_parallel", "recompute",
              "distributed_optimizer", "attention"):
        assert s["layout"][k] == best[k], k
    assert_tiles(text, s)
    assert p["best_reason"] in text.replace("&#x27;", "'")


def test_header_and_attention_equal_estimate_json(golden):
    """Tokens and parameters are `estimate --json`'s; the attention section is `estimate --json` at the layout."""
    s, text, p = golden
    e = cli_json("estimate", *SEED, "--json")
    assert f'{e["sequence_length"]:,} tokens per clip' in text and f'{e["params"]["total"]:,} parameters' in text
    lay = s["layout"]
    flags = ["--tp", lay["tp"], "--pp", lay["pp"], "--vpp", lay["vpp"], "--cp", lay["cp"], "--dp", lay["dp"],
             "--micro-batch", lay["micro_batch"], "--global-batch", lay["global_batch"], "--recompute", lay["recompute"],
             "--sequence-parallel" if lay["sequence_parallel"] else "--no-sequence-parallel",
             "--distributed-optimizer" if lay["distributed_optimizer"] else "--no-distributed-optimizer"]
    at = cli_json("estimate", *SEED, *map(str, flags), "--json")
    fig = json.loads(re.search(r'data-plot="fig-attention">(.*?)</script>', text, re.S).group(1))
    days_panel = fig["data"][2]["y"]
    assert days_panel == [r["days"] for r in at["attention_comparison"]]
    flops_panel = fig["data"][0]["y"]
    assert flops_panel == [r["forward_flops"] / 1e12 for r in at["attention_comparison"]]
