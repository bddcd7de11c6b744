"""planner/report_data.py: what the report shows, from a typed Plan built by a small factory (no plotly, no browser)."""

import subprocess
import sys
from dataclasses import replace

import pytest

from soraplan.planner import build_spec
from soraplan.planner.errors import UserError
from soraplan.planner.report_data import (gather, layout_text, normalize_validation, rank_grid, sensitivity_rows,
                                          spec_for_layout)
from soraplan.planner.results import (BestLayout, Budget, CountSearch, CountTotal, LayoutMemory, LayoutStep,
                                      LayoutTrain, PassRow, Plan, RankedLayout, SearchSummary, SensitivityRow,
                                      StageBudget, StageRow)


# ------------------------------------------------------------------------------ factory of typed plans
def entry(tp, pp, cp, dp, days, total_gib=50.0, mb=1, gb=None, capacity=80.0, mfu=0.36, eff=0.6, **layout):
    """One ranked layout; step terms the report does not draw are zero, `layout` overrides Layout fields."""
    gpus = tp * pp * cp * dp
    gb = gb or mb * dp
    mem = LayoutMemory(weights=2.0, grads=4.0, optimizer=1.0, activations=total_gib - 10.0, buffers=3.0,
                       total=total_gib, capacity=capacity, usable=capacity * 0.9, fits=total_gib <= capacity * 0.9)
    step = LayoutStep(compute_s=0.0, gemm_s=0.0, attention_s=0.0, elementwise_s=0.0, recompute_s=0.0, tp_comm_s=0.0,
                      cp_comm_s=0.0, cp_comm_total_s=0.0, dp_comm_s=0.0, dp_comm_total_s=0.0, pp_bubble_s=0.0,
                      pp_p2p_s=0.0, optimizer_s=0.0, efficiency=eff, mfu=mfu, samples_per_step=gb, time_s=2.5,
                      samples_per_s=10.0)
    train = LayoutTrain(samples=1e7, steps=1000, days=days, gpu_hours=days * 24 * gpus, cost_usd=days * 48 * gpus)
    fields = {"tp": tp, "pp": pp, "vpp": 1, "cp": cp, "dp": dp, "micro_batch": mb, "microbatches": 1, "global_batch": gb,
              "sequence_parallel": tp > 1, "recompute": "none", "distributed_optimizer": True, "attention": "full"}
    return RankedLayout(**(fields | layout), gpus_used=gpus, memory_gib=mem, step=step, train=train)


def best_of(e, gpus):
    """The recommendation: a ranked layout and the GPU count it was searched for."""
    return BestLayout(**{k: getattr(e, k) for k in e.__dataclass_fields__}, gpus=gpus)


def stage(name, per):
    """A curriculum stage; `per` holds each GPU count's StageRow fields (feasible, layout and read rates added)."""
    return StageBudget(name=name, geometry="960 frames 256x256 (40 s)", sequence_length=30720, samples=1e7,
                       dataset=None, storage={},
                       per_gpus=tuple(StageRow(**(dict(feasible=True, layout="tp=8 dp=32", read_mb_s_per_gpu_latent=0.5,
                                                       read_mb_s_per_gpu_raw=0.2) | p)) for p in per))


def sens(assumption, low, high, days_low, days_high, base="", days_base=9.0, cost_low=None, cost_high=None, note=""):
    """One sensitivity row."""
    return SensitivityRow(assumption=assumption, low=low, high=high, base=base, days_base=days_base,
                          days_low=days_low, days_high=days_high, cost_low=cost_low, cost_high=cost_high, note=note)


@pytest.fixture
def contract_plan():
    """A Plan as `soraplan.planner.plan.plan` returns it: three GPU counts, a two-stage budget, sensitivity."""
    ranked_256 = (entry(8, 1, 1, 32, 9.0), entry(4, 2, 1, 32, 9.5, total_gib=40.0), entry(8, 2, 1, 16, 10.0))
    return Plan(
        spec={}, objective="time", deadline_days=None,
        search=SearchSummary(headroom=0.1, max_tp_in_node=8, global_batch_range=(64, 1024), attentions=("full",),
                             samples=1e7, efficiency={"gemm": 0.65, "attention": 0.55, "hbm": 0.8, "comm": 0.8,
                                                      "source": "table: A100"}),
        gpu_counts=(
            CountSearch(gpus=128, ranked=(entry(8, 1, 1, 16, 18.0),), rejected={"memory": 40, "divisibility": 7},
                        evaluated=60, feasible=13, why_best="only TP 8 fits"),
            CountSearch(gpus=256, ranked=ranked_256, rejected={"memory": 30}, evaluated=80, feasible=50,
                        why_best="TP 8 x DP 32 beats TP 4 x PP 2 by 0.5 days: no pipeline bubble"),
            CountSearch(gpus=8, ranked=(), rejected={"memory": 12}, evaluated=12, feasible=0, why_best="",
                        message="no layout fits on 8 x a100-80g"),
        ),
        best=best_of(ranked_256[0], 256), best_reason="fastest: 256 GPUs, 9.0 days",
        budget=Budget(curriculum=True,
                      stages=(stage("images 256²", [{"gpus": 128, "days": 6.0, "gpu_hours": 1.0, "cost_usd": 2.0},
                                                    {"gpus": 256, "days": 3.0, "gpu_hours": 20_000.0, "cost_usd": 40_000.0}]),
                              stage("clips <b>40 s</b>", [{"gpus": 128, "days": 18.0, "gpu_hours": 3.0, "cost_usd": 4.0},
                                                          {"gpus": 256, "days": 9.0, "gpu_hours": 55_000.0,
                                                           "cost_usd": 110_000.0}])),
                      totals=(CountTotal(gpus=128, days=24.0, gpu_hours=4.0, cost_usd=6.0, feasible=True),
                              CountTotal(gpus=256, days=12.0, gpu_hours=75_000.0, cost_usd=150_000.0, feasible=True)),
                      passes=(PassRow(gpus=128, feasible=True, days_per_pass=18.0, passes_in_60_days=3.3,
                                      passes_in_90_days=5.0),
                              PassRow(gpus=256, feasible=True, days_per_pass=9.0, passes_in_60_days=6.7,
                                      passes_in_90_days=10.0)),
                      pass_samples=10_000_000, statement="128-256 GPUs for 60-90 days buy 3.3-10 passes."),
        sensitivity=(
            sens("kernel efficiency (MFU)", "x0.75", "x1.15", 12.0, 7.8, base="gemm 0.65", cost_low=1.0, cost_high=2.0,
                 note="table"),
            sens("failure/restart overhead", "0%", "15%", 9.0, 10.35, base="0%", cost_low=110_592.0,
                 cost_high=127_180.8),
            sens("epochs", 0.5, 2.0, 4.5, 18.0, base=1.0, note="days scale with the samples seen"),
            sens("price per GPU-hour", "$1.50", "$2.50", 9.0, 9.0, base="$2.00", cost_low=1.0, cost_high=2.0,
                 note="cost only")),
    )


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
    assert len(d["top_layouts"]) == 3 and d["top_layouts"][1].tp == 4
    # the tornado is sorted so the widest bar is last (drawn on top)
    assert [r.assumption for r in d["sensitivity"]][-1] == "epochs"
    assert [r.assumption for r in d["sensitivity"]][0] == "price per GPU-hour"
    titles = " | ".join(r["title"] for r in d["risks"])
    assert "Memory headroom 38%" in titles and "(median) on 18 published a100-80g runs" in titles
    assert "Failures and restarts not in the plan" in titles and "missed" in titles
    restart = next(r for r in d["risks"] if r["title"].startswith("Failures"))
    assert "With 15% of the time lost" in restart["text"] and "from 9.0 to 10.3 days" in restart["text"]
    b = d["budget"]
    assert b.curriculum and b.gpus == 256 and [st.at_best.days for st in b.stages] == [3.0, 9.0]
    assert d["grid"]["world"] == 256 and d["grid"]["nodes"] == 32
    assert [r["attention"] for r in d["attention"]][0] == "full" and len(d["attention"]) == 3
    assert d["validation"] is None
    assert any(a["name"] == "Validation" and a["value"] == "none" for a in d["assumptions"])


def test_spec_for_layout_is_that_layout(seed, contract_plan):
    s = spec_for_layout(seed, contract_plan.best)
    p = s.parallel
    assert (p.tp, p.pp, p.cp, p.dp_size, p.world, p.global_batch_size) == (8, 1, 1, 32, 256, 32)


def test_nothing_fits_is_said_plainly(seed, contract_plan):
    plan = replace(contract_plan, gpu_counts=tuple(replace(c, ranked=()) for c in contract_plan.gpu_counts), best=None)
    d = gather(seed, gpu_counts=[128, 256, 8], plan=plan)
    assert d["summary"] is None and d["grid"] is None and d["attention"] == []
    assert d["risks"][0]["title"] == "Nothing fits"


def test_headroom_levels(seed, contract_plan):
    plan = replace(contract_plan, best=best_of(entry(8, 1, 1, 32, 9.0, total_gib=76.0), 256))
    d = gather(seed, gpu_counts=[256], plan=plan)
    assert d["risks"][0]["level"] == "warn" and d["risks"][0]["title"] == "Memory headroom 5%"
    plan = replace(contract_plan, best=best_of(entry(8, 1, 1, 32, 9.0, total_gib=60.0), 256))
    assert gather(seed, gpu_counts=[256], plan=plan)["risks"][0]["level"] == "ok"


def test_measured_efficiency_turns_the_speed_flag(seed, contract_plan):
    val = {"date": "2026-11-26", "device": "NVIDIA H100 80GB HBM3", "efficiency": 0.58,
           "results": [{"quantity": "params", "measured": 1, "predicted": 1, "error_pct": 0.0, "pass": True}]}
    d = gather(seed, gpu_counts=[256], plan=contract_plan, validation=normalize_validation(val))
    speed = d["risks"][1]
    assert speed["title"] == "Speed measured at 58% of peak" and speed["level"] == "ok"
    assert "-3% relative to the plan's 60%" in speed["text"]
    assert d["validation"].device == "NVIDIA H100 80GB HBM3" and d["validation"].passed == 1


def test_normalize_validation_shapes():
    v = normalize_validation([{"name": "flops", "measured": 2.0, "predicted": 2.0, "error": 0.01, "ok": False,
                               "device": "cpu"}])
    assert v.rows[0].error_pct == pytest.approx(1.0) and v.failed == 1 and v.device == "cpu"
    v = normalize_validation({"timestamp": "t", "gpu": "h100", "rows": {"params": {"measured": 1, "predicted": 1}}})
    assert v.rows[0].quantity == "params" and v.date == "t" and v.device == "h100"
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
    assert layout_text(entry(8, 2, 1, 16, 1.0, vpp=2, recompute="selective")) == (
        "TP 8 × PP 2 (virtual 2) × CP 1 × DP 16 (micro-batch 1, global batch 16, sequence parallel, selective recompute, "
        "distributed optimizer)")


def test_sensitivity_rows_tolerates_missing_numbers():
    rows = sensitivity_rows([sens("a", 1, 2, None, 3), sens("b", 1, 2, 1.0, 3.0)])
    assert [r.assumption for r in rows] == ["a", "b"]


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
    assert v.date == "2026-11-26 07:30 UTC" and v.device == "CPU (2 cores, Linux-6.1)" and not v.gpu_run
    assert [r.ok for r in v.rows] == [True, True, None, False]  # info row; the unmeasurable config fails
    assert v.rows[1].error_pct == pytest.approx(1.0) and v.rows[1].tolerance_pct == pytest.approx(1.0)
    assert (v.passed, v.failed, v.info) == (2, 1, 1) and v.efficiency is None
    g = normalize_validation(C_GPU)
    assert g.device == "NVIDIA H100 80GB HBM3" and g.gpu_run and g.efficiency == 0.41


def test_gpu_calibration_turns_the_speed_flag(seed, contract_plan):
    d = gather(seed, gpu_counts=[256], plan=contract_plan, validation=normalize_validation(C_GPU))
    speed = d["risks"][1]
    assert speed["title"] == "Speed measured at 41% of peak" and speed["level"] == "bad"  # plan assumed 60%
    assert not any(a["name"] == "Validation" for a in d["assumptions"])
