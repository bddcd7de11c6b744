"""planner/report_data.py: what the report shows, from a plan dict in the `soraplan plan --json` contract (no plotly, no browser)."""

import copy
import subprocess
import sys

import pytest

from soraplan.planner import build_spec
from soraplan.planner.errors import UserError
from soraplan.planner.report_data import (gather, layout_text, normalize_validation, rank_grid, sensitivity_rows,
                                          spec_for_layout)


def entry(tp, pp, cp, dp, days, total_gib=50.0, mb=1, gb=None, capacity=80.0, mfu=0.36, eff=0.6):
    """One ranked layout in the shape `soraplan.planner.plan.entry` returns."""
    gpus = tp * pp * cp * dp
    mem = {"weights": 2.0, "grads": 4.0, "optimizer": 1.0, "activations": total_gib - 10.0, "buffers": 3.0,
           "total": total_gib, "capacity": capacity, "usable": capacity * 0.9, "fits": total_gib <= capacity * 0.9}
    return {"tp": tp, "pp": pp, "vpp": 1, "cp": cp, "dp": dp, "micro_batch": mb, "microbatches": 1,
            "global_batch": gb or mb * dp, "sequence_parallel": tp > 1, "recompute": "none", "distributed_optimizer": True,
            "attention": "full", "gpus_used": gpus, "memory_gib": mem,
            "step": {"time_s": 2.5, "mfu": mfu, "efficiency": eff, "samples_per_s": 10.0},
            "train": {"days": days, "gpu_hours": days * 24 * gpus, "cost_usd": days * 48 * gpus}}


def stage(name, per):
    return {"name": name, "geometry": "960 frames 256x256 (40 s)", "sequence_length": 30720, "samples": 1e7,
            "dataset": None, "per_gpus": [dict(p, feasible=True, layout="tp=8 dp=32", read_mb_s_per_gpu_latent=0.5,
                                               read_mb_s_per_gpu_raw=0.2) for p in per]}


@pytest.fixture
def contract_plan():
    """A plan dict in the shape `soraplan plan --json` prints."""
    ranked_256 = [entry(8, 1, 1, 32, 9.0), entry(4, 2, 1, 32, 9.5, total_gib=40.0), entry(8, 2, 1, 16, 10.0)]
    return {
        "spec": {}, "objective": "time", "deadline_days": None,
        "search": {"headroom": 0.1, "max_tp_in_node": 8, "global_batch_range": [64, 1024], "attentions": ["full"],
                   "efficiency": {"gemm": 0.65, "attention": 0.55, "hbm": 0.8, "comm": 0.8, "source": "table: A100"}},
        "gpu_counts": [
            {"gpus": 128, "ranked": [entry(8, 1, 1, 16, 18.0)], "rejected": {"memory": 40, "divisibility": 7},
             "evaluated": 60, "feasible": 13, "why_best": "only TP 8 fits"},
            {"gpus": 256, "ranked": ranked_256, "rejected": {"memory": 30}, "evaluated": 80, "feasible": 50,
             "why_best": "TP 8 x DP 32 beats TP 4 x PP 2 by 0.5 days: no pipeline bubble"},
            {"gpus": 8, "ranked": [], "rejected": {"memory": 12}, "evaluated": 12, "feasible": 0, "why_best": "",
             "message": "no layout fits on 8 x a100-80g"},
        ],
        "best": dict(ranked_256[0], gpus=256), "best_reason": "fastest: 256 GPUs, 9.0 days",
        "budget": {"curriculum": True,
                   "stages": [stage("images 256²", [{"gpus": 128, "days": 6.0, "gpu_hours": 1.0, "cost_usd": 2.0},
                                                    {"gpus": 256, "days": 3.0, "gpu_hours": 20_000.0, "cost_usd": 40_000.0}]),
                              stage("clips <b>40 s</b>", [{"gpus": 128, "days": 18.0, "gpu_hours": 3.0, "cost_usd": 4.0},
                                                          {"gpus": 256, "days": 9.0, "gpu_hours": 55_000.0,
                                                           "cost_usd": 110_000.0}])],
                   "totals": [{"gpus": 128, "days": 24.0, "gpu_hours": 4.0, "cost_usd": 6.0, "feasible": True},
                              {"gpus": 256, "days": 12.0, "gpu_hours": 75_000.0, "cost_usd": 150_000.0, "feasible": True}],
                   "passes": [{"gpus": 128, "feasible": True, "days_per_pass": 18.0, "passes_in_60_days": 3.3,
                               "passes_in_90_days": 5.0},
                              {"gpus": 256, "feasible": True, "days_per_pass": 9.0, "passes_in_60_days": 6.7,
                               "passes_in_90_days": 10.0}],
                   "pass_samples": 10_000_000, "statement": "128-256 GPUs for 60-90 days buy 3.3-10 passes."},
        "sensitivity": [
            {"assumption": "kernel efficiency (MFU)", "low": "x0.75", "high": "x1.15", "base": "gemm 0.65",
             "days_base": 9.0, "days_low": 12.0, "days_high": 7.8, "cost_low": 1.0, "cost_high": 2.0, "note": "table"},
            {"assumption": "failure/restart overhead", "low": "0%", "high": "15%", "base": "0%", "days_base": 9.0,
             "days_low": 9.0, "days_high": 10.35, "cost_low": 110_592.0, "cost_high": 127_180.8, "note": ""},
            {"assumption": "epochs", "low": 0.5, "high": 2.0, "base": 1.0, "days_base": 9.0, "days_low": 4.5,
             "days_high": 18.0, "note": "days scale with the samples seen"},
            {"assumption": "price per GPU-hour", "low": "$1.50", "high": "$2.50", "base": "$2.00", "days_base": 9.0,
             "days_low": 9.0, "days_high": 9.0, "cost_low": 1.0, "cost_high": 2.0, "note": "cost only"}],
    }


@pytest.fixture
def seed():
    return build_spec(flags={"frames": 960, "res": 256})


def test_gather_from_contract_plan(seed, contract_plan):
    d = gather(seed, gpu_counts=[128, 256, 8], deadline_days=7, plan=contract_plan)
    s = d["summary"]
    assert (s["gpus"], s["days"], s["gpu_hours"], s["cost_usd"]) == (256, 9.0, 9.0 * 24 * 256, 9.0 * 48 * 256)
    assert s["nodes"] == 32 and s["gpu"] == "a100-80g"
    assert s["why_best"].startswith("TP 8 x DP 32") and s["best_reason"] == "fastest: 256 GPUs, 9.0 days"
    assert [r["recommended"] for r in d["counts"]] == [False, True, False]
    assert d["counts"][2]["fits"] is False and d["counts"][2]["layout"] == "no layout fits on 8 x a100-80g"
    assert [r["meets_deadline"] for r in d["counts"]] == [False, False, None]
    assert len(d["top_layouts"]) == 3 and d["top_layouts"][1]["tp"] == 4
    # the tornado is sorted so the widest bar is last (drawn on top)
    assert [r["assumption"] for r in d["sensitivity"]][-1] == "epochs"
    assert [r["assumption"] for r in d["sensitivity"]][0] == "price per GPU-hour"
    titles = " | ".join(r["title"] for r in d["risks"])
    assert "Memory headroom 38%" in titles and "Speed assumed, not measured" in titles
    assert "Failures and restarts not in the plan" in titles and "missed" in titles
    restart = next(r for r in d["risks"] if r["title"].startswith("Failures"))
    assert "With 15% of the time lost" in restart["text"] and "from 9.0 to 10.3 days" in restart["text"]
    b = d["budget"]
    assert b["curriculum"] and b["gpus"] == 256 and [st["at_best"]["days"] for st in b["stages"]] == [3.0, 9.0]
    assert d["grid"]["world"] == 256 and d["grid"]["nodes"] == 32
    assert [r["attention"] for r in d["attention"]][0] == "full" and len(d["attention"]) == 3
    assert d["validation"] is None
    assert any(a["name"] == "Validation" and a["value"] == "none" for a in d["assumptions"])


def test_spec_for_layout_is_that_layout(seed, contract_plan):
    s = spec_for_layout(seed, contract_plan["best"])
    p = s.parallel
    assert (p.tp, p.pp, p.cp, p.dp_size, p.world, p.global_batch_size) == (8, 1, 1, 32, 256, 32)


def test_nothing_fits_is_said_plainly(seed, contract_plan):
    plan = copy.deepcopy(contract_plan)
    for c in plan["gpu_counts"]:
        c["ranked"] = []
    plan["best"] = None
    d = gather(seed, gpu_counts=[128, 256, 8], plan=plan)
    assert d["summary"] is None and d["grid"] is None and d["attention"] == []
    assert d["risks"][0]["title"] == "Nothing fits"


def test_headroom_levels(seed, contract_plan):
    plan = copy.deepcopy(contract_plan)
    plan["best"] = dict(entry(8, 1, 1, 32, 9.0, total_gib=76.0), gpus=256)
    d = gather(seed, gpu_counts=[256], plan=plan)
    assert d["risks"][0]["level"] == "warn" and d["risks"][0]["title"] == "Memory headroom 5%"
    plan["best"] = dict(entry(8, 1, 1, 32, 9.0, total_gib=60.0), gpus=256)
    assert gather(seed, gpu_counts=[256], plan=plan)["risks"][0]["level"] == "ok"


def test_measured_efficiency_turns_the_speed_flag(seed, contract_plan):
    val = {"date": "2026-11-26", "device": "NVIDIA H100 80GB HBM3", "efficiency": 0.58,
           "results": [{"quantity": "params", "measured": 1, "predicted": 1, "error_pct": 0.0, "pass": True}]}
    d = gather(seed, gpu_counts=[256], plan=contract_plan, validation=val)
    speed = d["risks"][1]
    assert speed["title"] == "Speed measured at 58% of peak" and speed["level"] == "ok"
    assert "-3% relative to the plan's 60%" in speed["text"]
    assert d["validation"]["device"] == "NVIDIA H100 80GB HBM3" and d["validation"]["passed"] == 1


def test_normalize_validation_shapes():
    v = normalize_validation([{"name": "flops", "measured": 2.0, "predicted": 2.0, "error": 0.01, "ok": False,
                               "device": "cpu"}])
    assert v["rows"][0]["error_pct"] == pytest.approx(1.0) and v["failed"] == 1 and v["device"] == "cpu"
    v = normalize_validation({"timestamp": "t", "gpu": "h100", "rows": {"params": {"measured": 1, "predicted": 1}}})
    assert v["rows"][0]["quantity"] == "params" and v["date"] == "t" and v["device"] == "h100"
    assert normalize_validation(None) is None
    with pytest.raises(UserError, match="--validation"):
        normalize_validation({"nothing": 1})
    with pytest.raises(UserError, match="--validation"):
        normalize_validation({"results": "x"})


def test_rank_grid_megatron_order():
    """rank = tp + tp*(cp + cp*(dp + dp*pp)): TP fastest, then CP, DP, PP."""
    g = rank_grid(tp=2, pp=2, cp=1, dp=2, gpus_per_node=4)
    assert g["nodes"] == 2 and g["replica_gpus"] == 4
    coords = [(c["tp"], c["dp"], c["pp"]) for row in g["cells"] for c in row]
    assert coords == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1)]
    g = rank_grid(tp=2, pp=1, cp=3, dp=1, gpus_per_node=8)
    assert g["cells"][0][6] is None and g["cells"][0][5] == {"rank": 5, "tp": 1, "cp": 2, "dp": 0, "pp": 0}
    assert rank_grid(8, 1, 1, 1000, 8, max_nodes=10)["shown_nodes"] == 10


def test_layout_text():
    assert layout_text(entry(8, 2, 1, 16, 1.0) | {"vpp": 2, "recompute": "selective"}) == (
        "TP 8 × PP 2 (virtual 2) × CP 1 × DP 16 (micro-batch 1, global batch 16, sequence parallel, selective recompute, "
        "distributed optimizer)")


def test_sensitivity_rows_tolerates_missing_numbers():
    rows = sensitivity_rows({"sensitivity": [{"assumption": "a", "low": 1, "high": 2, "days_low": None, "days_high": 3},
                                             {"assumption": "b", "low": 1, "high": 2, "days_low": 1.0, "days_high": 3.0}]})
    assert [r["assumption"] for r in rows] == ["a", "b"]


def test_bad_counts_and_deadline(seed, contract_plan):
    with pytest.raises(UserError, match="--gpus"):
        gather(seed, gpu_counts=[0], plan=contract_plan)
    with pytest.raises(UserError, match="--deadline-days"):
        gather(seed, gpu_counts=[8], deadline_days=-1, plan=contract_plan)


def test_report_data_imports_no_plotly():
    code = ("import sys; import soraplan.planner.report_data as r; from soraplan.planner import build_spec; "
            "d = r.gather(build_spec(flags={'frames': 96, 'res': 128}), gpu_counts=[16]); assert d['summary']; "
            "bad = [m for m in ('plotly', 'torch', 'megatron', 'kubernetes', 'submitit') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


C_CPU = {"machine": {"date": "2026-11-26 07:30 UTC", "host": "ci", "cpus": 2, "python": "3.11.7",
                     "platform": "Linux-6.1"},
         "device": "cpu", "quick": True,
         "rows": [{"config": "6B meta", "quantity": "parameters", "measured": 6131825792, "predicted": 6131825792,
                   "tolerance": 0, "unit": "params", "error": 0.0, "ok": True},
                  {"config": "tiny flash", "quantity": "saved activations", "measured": 1.01e9, "predicted": 1.0e9,
                   "tolerance": 0.01, "unit": "B", "error": 0.01, "ok": True},
                  {"config": "tiny flash", "quantity": "elementwise remainder", "measured": 3e9, "predicted": None,
                   "tolerance": None, "unit": "FLOP", "error": None, "ok": True}],
         "errors": [{"config": "pp=2", "error": "cannot measure pp > 1"}], "failed": 1, "ok": False}
C_GPU = {"machine": {"date": "2026-11-26 08:00 UTC"}, "device": "cuda",
         "rows": [{"config": "6B x 4 layers", "quantity": "step time", "measured": 1.9, "predicted": 2.0,
                   "tolerance": 0.15, "unit": "s", "error": -0.05, "ok": True}],
         "calibration": {"gpu": "h100-sxm", "efficiency": 0.41, "gemm_efficiency": 0.6, "attention_efficiency": 0.4,
                         "device": "NVIDIA H100 80GB HBM3", "source": "soraplan validate --device cuda"},
         "failed": 0, "ok": True}


def test_normalize_validation_issue_c_format():
    v = normalize_validation(C_CPU)
    assert v["date"] == "2026-11-26 07:30 UTC" and v["device"] == "CPU (2 cores, Linux-6.1)" and not v["gpu_run"]
    assert [r["pass"] for r in v["rows"]] == [True, True, None, False]  # info row; the unmeasurable config fails
    assert v["rows"][1]["error_pct"] == pytest.approx(1.0) and v["rows"][1]["tolerance_pct"] == pytest.approx(1.0)
    assert (v["passed"], v["failed"], v["info"]) == (2, 1, 1) and v["efficiency"] is None
    g = normalize_validation(C_GPU)
    assert g["device"] == "NVIDIA H100 80GB HBM3" and g["gpu_run"] and g["efficiency"] == 0.41


def test_gpu_calibration_turns_the_speed_flag(seed, contract_plan):
    d = gather(seed, gpu_counts=[256], plan=contract_plan, validation=C_GPU)
    speed = d["risks"][1]
    assert speed["title"] == "Speed measured at 41% of peak" and speed["level"] == "bad"  # plan assumed 60%
    assert not any(a["name"] == "Validation" for a in d["assumptions"])
