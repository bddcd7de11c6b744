"""The backtest: corpus loader, run -> Spec, the comparison, the fit file, `soraplan backtest` and the doc's figures."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from soraplan.cli import app
from soraplan.planner.backtest import RULES, backtest, gpu_summary
from soraplan.planner.corpus import CorpusError, load_corpus, parse_corpus, parse_run
from soraplan.planner.corpus_spec import RunExcluded, run_spec
from soraplan.planner.efficiency import (StepFit, attention_shape, comm_efficiency, current_fit, flat, gemm_shape,
                                         parse_fit)
from soraplan.planner.report_data import backtest_risk
from soraplan.planner.scalar_ops import ScalarOps

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "planner" / "data" / "published_runs.yaml"
DOC = ROOT / "docs" / "backtest.md"
runner = CliRunner()


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(CORPUS.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def result():
    return backtest()


def test_every_entry_loads(raw):
    runs = load_corpus()
    assert len(runs) == len(raw["runs"]) >= 15
    assert len({r.source.id for r in runs}) >= 7
    assert {r.kind for r in runs} == {"llm", "dit"}
    assert {"a100-80g", "h100-sxm"} <= {r.gpu for r in runs}
    assert {r.split for r in runs} == {"tune", "check"}
    # value forms survive: an assumed value keeps its reason, a derived one its formula
    first = runs[0]
    assert first.layout_value("micro_batch").status == "assumed" and first.layout_value("micro_batch").note
    assert first.layout_value("dp").status == "derived" and "gpus" in first.layout_value("dp").note
    assert "micro_batch" in first.assumed


@pytest.mark.parametrize("path, bad, field", [
    (("layout", "tp"), "eight", "layout.tp"),
    (("split",), "train", "split"),
    (("kind",), "vlm", "kind"),
    (("layout", "recompute"), "some", "layout.recompute"),
    (("layout", "sequence_parallel"), "yes", "layout.sequence_parallel"),
    (("published", "tflops_per_gpu", "value"), "fast", "published.tflops_per_gpu"),
    (("model", "layers"), {"value": 24, "assumed": "maybe"}, "model.layers"),
])
def test_malformed_entry_is_one_line_naming_entry_and_field(raw, path, bad, field):
    entry = copy.deepcopy(raw["runs"][0])
    node = entry
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises(CorpusError) as e:
        parse_run(entry, 0)
    msg = str(e.value)
    assert "\n" not in msg and entry["name"] in msg and field in msg


def test_missing_fields_and_duplicates(raw):
    entry = copy.deepcopy(raw["runs"][0])
    del entry["layout"]["global_batch"]
    with pytest.raises(CorpusError, match="missing field 'layout.global_batch'"):
        parse_run(entry, 0)
    with pytest.raises(CorpusError, match=r"runs\[3\]\.name"):
        parse_run({"split": "tune"}, 3)
    twice = {"runs": [raw["runs"][0], raw["runs"][0]]}
    with pytest.raises(CorpusError, match="used twice"):
        parse_corpus(twice)


def test_every_run_is_predicted(result):
    assert result.excluded == ()
    assert len(result.runs) == len(load_corpus())
    assert {r.source for r in result.runs} <= set(RULES)
    for r in result.runs:
        assert r.published > 0 and r.predicted > 0
        assert r.error == pytest.approx(r.predicted / r.published - 1)
        assert 0 < r.dominant_share <= 1


def test_choices_beyond_the_corpus_are_stated():
    runs = {r.name: r for r in load_corpus()}
    llama = run_spec(runs["llama3-405b-8k-8192xh100"])
    assert llama.spec.model.layers == 128 and any("126 padded to 128" in c for c in llama.choices)
    assert llama.spec.parallel.vpp == 4 and any(c.startswith("vpp: 4") for c in llama.choices)
    wan = run_spec(runs["nemo-dfm-wan2.1-14b-megatron-128xh100"]).spec
    assert wan.seq_len == 37440 and wan.parallel.recompute_layers == 8
    gpt = run_spec(runs["megatron2021-gpt-1.7b-32xa100"])
    assert gpt.spec.kernels.attention_kernel == "unfused" and gpt.choices


def test_unmappable_run_is_excluded_with_its_reason():
    run = load_corpus()[-1]
    odd = run.__class__(**{**run.__dict__, "model": (("arch", run.model[0][1].__class__("unet")),) + run.model[1:]})
    with pytest.raises(RunExcluded, match="unet"):
        run_spec(odd)
    res = backtest(runs=(odd,))
    assert res.runs == () and res.excluded[0].name == odd.name and "unet" in res.excluded[0].reason


def test_summaries(result):
    for split in ("check", "tune"):
        rows = [r for r in result.runs if r.split == split]
        s = result.summary[split]
        assert s.n == len(rows) and s.worst_abs_error == max(abs(r.error) for r in rows)
        assert s.median_abs_error <= s.worst_abs_error
    assert set(result.by_gpu) == {r.gpu for r in result.runs}
    assert gpu_summary("h200").n == 0


def _doc_summary(split):
    row = next(line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith(f"| {split} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    pct = [float(c.rstrip(" %").replace("−", "-")) / 100 for c in cells[2:5]]
    return int(cells[1]), pct


@pytest.mark.parametrize("split", ["check", "tune"])
def test_doc_states_the_summary(result, split):
    """docs/backtest.md states the summary the model gives: a change that moves it (worse or better) fails here
    until the doc is updated with the new numbers."""
    n, (median, worst, bias) = _doc_summary(split)
    s = result.summary[split]
    assert s.n == n
    assert s.median_abs_error == pytest.approx(median, abs=0.0006)
    assert s.worst_abs_error == pytest.approx(worst, abs=0.0006)
    assert s.bias == pytest.approx(bias, abs=0.0006)


def test_fit_file_names_only_tune_runs():
    fit = current_fit()
    tune = [r.name for r in load_corpus() if r.split == "tune"]
    assert list(fit.tune_runs) == tune and fit.date
    assert 0 < fit.gemm_max["ampere"] <= 1 and 0 < fit.attn_max["hopper"] <= 1


def test_fit_parse_errors():
    with pytest.raises(ValueError, match="params.gemm_nought: unknown"):
        parse_fit({"params": {"gemm_nought": 1}})
    with pytest.raises(ValueError, match="params.launch_s"):
        parse_fit({"params": {"launch_s": -1}})
    assert flat(parse_fit({"params": {"gemm_max.hopper": 0.5}}))["gemm_max.hopper"] == 0.5


def test_shape_factors():
    fit = StepFit()
    small, large = gemm_shape(ScalarOps, fit, 128, 512), gemm_shape(ScalarOps, fit, 8192, 32768)
    assert 0 < small < large < 1
    assert 0 < attention_shape(ScalarOps, fit, 1024, 64) < attention_shape(ScalarOps, fit, 65536, 128) < 1
    tiny = comm_efficiency(ScalarOps, fit, True, 1e4, 300e9, 25e9)
    big = comm_efficiency(ScalarOps, fit, True, 1e9, 300e9, 25e9)
    assert 0 < tiny < big <= fit.comm_max["intra"]


def test_report_risk_with_and_without_runs():
    r = backtest_risk("h200", "x", "", "y")
    assert r["level"] == "warn" and "No published training run on h200" in r["text"]
    a = backtest_risk("a100-80g", "x", "", "y")
    s = gpu_summary("a100-80g")
    assert f"on {s.n} published a100-80g runs" in a["title"] and f"{s.median_abs_error:.0%}" in a["title"]


def test_estimate_does_not_load_the_corpus():
    code = ("import sys; from soraplan.planner import build_spec; from soraplan.planner.step import step_time; "
            "step_time(build_spec()); print('soraplan.planner.corpus' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_cli_json_schema_and_filters():
    r = runner.invoke(app, ["backtest", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert {"runs", "summary", "summary_by_gpu", "excluded", "soraplan_version"} <= set(d)
    for row in d["runs"]:
        assert {"name", "source", "kind", "gpu", "split", "published", "predicted", "error", "figure",
                "dominant_term"} <= set(row)
        assert row["kind"] in ("llm", "dit")
    for split in ("check", "tune"):
        assert set(d["summary"][split]) >= {"n", "median_abs_error", "worst_abs_error", "bias"}
    c = json.loads(runner.invoke(app, ["backtest", "--json", "--split", "check", "--gpu", "H100-SXM"]).stdout)
    assert c["runs"] and {(x["split"], x["gpu"]) for x in c["runs"]} == {("check", "h100-sxm")}
    assert c["summary"]["tune"]["n"] == 0 and c["summary"]["check"]["n"] == len(c["runs"])


@pytest.mark.slow
def test_cli_table():
    r = runner.invoke(app, ["backtest", "--split", "tune"], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    assert "tune (n=" in r.stdout and "check (n=" not in r.stdout


@pytest.mark.parametrize("args, field", [(["--split", "all"], "--split"), (["--gpu", "tpu-v5"], "--gpu"),
                                         (["--bogus"], "--bogus")])
def test_cli_bad_flags_one_line_exit_2(args, field):
    out = subprocess.run([sys.executable, "-m", "soraplan", "backtest", *args], capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and field in out.stderr and "Traceback" not in out.stderr
