"""`soraplan report`: one self-contained file, escaped strings, one-line errors (no browser needed here)."""

import json
import os
import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soraplan.cli import app
from soraplan.cli.report_view import embed_json, render_html
from soraplan.planner import build_spec
from soraplan.planner.report_data import gather, normalize_validation

from test_report_data import contract_plan, sens, stage  # noqa: F401  (fixture + helpers)

HOSTILE = "<script>alert(1)</script>"


def run(*args):
    return CliRunner().invoke(app, ["report", *args])


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "capacity.html"
    r = run("--frames", "960", "--res", "256", "--tp", "8", "--gpus", "128,256", "--name", HOSTILE, "-o", str(out))
    assert r.exit_code == 0, r.output
    return out


def test_one_self_contained_file_under_6_mb(page):
    text = page.read_text(encoding="utf-8")
    assert page.stat().st_size < 6_000_000
    assert text.count("* plotly.js v") == 1  # the bundle's banner: inlined exactly once
    assert not re.search(r"<script[^>]*\bsrc=", text, re.I)
    assert not re.search(r"<link\b|<iframe\b|<img\b|@import", text, re.I)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not list(page.parent.glob(".*.tmp"))  # written to a temp file, then renamed


def test_hostile_name_is_escaped(page):
    text = page.read_text(encoding="utf-8")
    assert HOSTILE not in text
    assert "<h1>&lt;script&gt;alert(1)&lt;/script&gt;</h1>" in text
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; · soraplan capacity report</title>" in text


def test_sections_and_plain_words(page):
    text = page.read_text(encoding="utf-8")
    for sid in ("summary", "time-cost", "memory", "layouts", "nodes", "attention", "sensitivity", "budget",
                "validation", "assumptions"):
        assert f'<section id="{sid}">' in text
    assert "No measurement backs this report." in text
    assert "Failures and restarts" in text and "Memory headroom" in text


def test_hostile_strings_everywhere_stay_text(tmp_path, contract_plan):  # noqa: F811
    """A custom GPU name, curriculum stage names and validation rows from files: all escaped, in HTML and charts."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "name: 'x</script><script>alert(2)</script>'\n"
        "hardware:\n  custom: {name: '<img src=x onerror=alert(3)>', peak_tflops: 312, hbm_gib: 80, hbm_tbs: 2,\n"
        "           intra_node_gbs: 300, inter_node_gbs: 25, usd_per_hour: 2, source: '<b>sheet</b>'}\n")
    spec = build_spec(config=cfg, flags={"tp": 8})
    budget = replace(contract_plan.budget, statement="<script>alert(7)</script>",
                     stages=(stage("</script><script>alert(4)</script>", [{"gpus": 256, "days": 1.0}]),
                             stage("<img src=x onerror=alert(8)>", [{"gpus": 256, "days": 2.0}])))
    plan = replace(contract_plan, budget=budget,
                   sensitivity=(sens("<b onmouseover=alert(5)>eff</b>", "</script>", 2, 8.0, 10.0),))
    val = {"device": "<i>gpu</i>", "results": [{"quantity": "</td><script>alert(6)</script>", "measured": 1,
                                                 "predicted": 1, "pass": True}]}
    html_text = render_html(gather(spec, gpu_counts=[256], plan=plan, validation=normalize_validation(val)))
    assert 'data-plot="fig-budget"' in html_text and 'data-plot="fig-sensitivity"' in html_text
    body = html_text.split("</style>", 1)[1]
    plotly_end = body.index("</script>", body.index("* plotly.js v"))
    after = body[plotly_end + len("</script>"):]
    assert "<script>alert" not in after and "<img src=x" not in after and "<b onmouseover" not in after
    assert "<b>sheet</b>" not in after and "<i>gpu</i>" not in after
    # exactly the scripts we put there: summary JSON, one per chart, the plotting loop
    assert after.count("<script") == after.count("</script>") == 1 + after.count("data-plot=") + 1
    for blob in re.findall(r'data-plot="[^"]+">(.*?)</script>', after, re.S):
        fig = json.loads(blob)
        assert fig["data"] and fig["layout"]


def test_embed_json_cannot_close_a_script():
    s = embed_json({"a": "</script><!--", "b": "&"})
    assert "<" not in s and ">" not in s and "&" not in s and json.loads(s) == {"a": "</script><!--", "b": "&"}


def test_validation_evidence_is_shown(tmp_path):
    val = tmp_path / "v.json"
    val.write_text(json.dumps({"date": "2026-11-25", "device": "NVIDIA A100-SXM4-80GB", "results": [
        {"quantity": "per-GPU memory", "unit": "GiB", "measured": 31.0, "predicted": 30.1, "error_pct": -2.9,
         "pass": False}]}))
    out = tmp_path / "r.html"
    r = run("--tp", "8", "--gpus", "64", "--validation", str(val), "-o", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "Measured 2026-11-25 on NVIDIA A100-SXM4-80GB: 0 passed, 1 failed." in text
    assert "No measurement backs this report." not in text


def test_yaml_report_section(tmp_path):
    (tmp_path / "v.json").write_text(json.dumps([{"quantity": "params", "measured": 1, "predicted": 1, "pass": True}]))
    cfg = tmp_path / "run.yaml"
    cfg.write_text("parallel: {tp: 8}\nreport: {gpus: '64,128', deadline_days: 5, validation: v.json}\n")
    out = tmp_path / "r.html"
    r = run("--config", str(cfg), "-o", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "deadline 5 days" in text and "1 passed, 0 failed" in text


def test_overwrites_atomically(tmp_path):
    out = tmp_path / "r.html"
    out.write_text("old")
    assert run("--tp", "8", "--gpus", "64", "-o", str(out)).exit_code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


@pytest.mark.parametrize("args, msg", [
    (["--gpus", "a,b"], "error: --gpus: comma-separated GPU counts expected"),
    (["--gpus", "0"], "error: --gpus: positive GPU counts expected"),
    (["--validation", "/nonexistent/v.json"], "error: --validation: no such file"),
    (["-o", "/nonexistent/dir/r.html"], "error: --output: directory does not exist"),
    (["--deadline-days", "-3"], "error: --deadline-days: must be positive"),
    (["--tp", "5"], "error: parallel.tp: heads (24) % tp (5) != 0"),
])
def test_bad_input_one_line_exit_2(tmp_path, args, msg):
    r = run("--tp", "8", *args) if "--tp" not in args else run(*args)
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [r.output.strip()] and r.output.startswith(msg), r.output


def test_validation_not_json(tmp_path):
    bad = tmp_path / "v.json"
    bad.write_text("{nope")
    r = run("--tp", "8", "--validation", str(bad), "-o", str(tmp_path / "r.html"))
    assert r.exit_code == 2 and "is not JSON" in r.output


GOLDEN = Path(__file__).parent / "golden" / "report_sections.html"
GOLDEN_SECTIONS = ("summary", "time-cost", "layouts", "sensitivity", "budget", "validation", "assumptions")


def test_golden_sections(contract_plan):  # noqa: F811
    """The generated HTML of the text sections for a fixed plan, byte for byte.

    Regenerate after an intended change: SORAPLAN_UPDATE_GOLDEN=1 pytest tests/test_report_html.py
    """
    from test_report_data import C_CPU

    spec = build_spec(flags={"frames": 960, "res": 256, "name": "golden run"})
    page = render_html(gather(spec, gpu_counts=[128, 256, 8], deadline_days=10, plan=contract_plan,
                              validation=normalize_validation(C_CPU)),
                       command="soraplan report --name 'golden run'", now=datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc))
    got = "\n".join(re.search(rf'<section id="{sid}">.*?</section>', page, re.S).group(0) for sid in GOLDEN_SECTIONS)
    got = got.replace("><", ">\n<") + "\n"  # one tag per line: readable diffs
    if os.environ.get("SORAPLAN_UPDATE_GOLDEN"):
        GOLDEN.write_text(got, encoding="utf-8")
    assert got == GOLDEN.read_text(encoding="utf-8")
