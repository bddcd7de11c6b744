"""Vectorised layout search == the per-layout loop over the scalar planner; infeasible spaces; the seed."""

import numpy as np
import pytest

from soraplan.planner import build_spec
from soraplan.planner.errors import UserError
from soraplan.planner.plan import plan
from soraplan.planner.rank import search_count, why_best
from soraplan.planner.search import OK, REASONS, SearchOptions, Space, reference_evaluate
from soraplan.planner.step import STEP_FIELDS

MEM = ("weights", "grads", "optimizer", "activations", "total")


def _compare(space: Space, gpus: int, n_random: int, seed: int = 0) -> int:
    """Evaluate a random sample (plus feasible layouts) both ways; return how many were compared in full."""
    x, _ = space.candidates(gpus)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x), size=min(n_random, len(x)), replace=False)
    ok = np.nonzero(space.evaluate(gpus, x)["reason"] == OK)[0]
    if len(ok):
        idx = np.concatenate([idx, rng.choice(ok, size=min(60, len(ok)), replace=False)])
    x = x.take(idx)
    vec = space.evaluate(gpus, x, compact=False)      # every sampled layout through the whole array model
    full = 0
    for rec in reference_evaluate(space, gpus, x):
        i = rec["i"]
        assert rec["reason"] == vec["reason"][i], (x.row(i), REASONS[rec["reason"]], REASONS[vec["reason"][i]])
        if "total" in rec:
            full += 1
            for f in MEM + STEP_FIELDS:
                assert vec[f][i] == pytest.approx(rec[f], rel=1e-9, abs=1e-300), (f, x.row(i))
    return full


@pytest.mark.parametrize("flags, gpus", [
    ({"frames": 960, "res": 256}, 64),
    ({"frames": 960, "res": 256, "attention": "spatial-temporal"}, 48),
    ({"frames": 96, "res": 128, "attention_kernel": "unfused", "dropout": 0.1, "adaln": "per-block"}, 24),
    ({"model": "DiT-XL/2"}, 16),
    ({"tokens": 4096, "layers": 6, "hidden": 512, "heads": 8, "cross_attn": False, "cpu_semantics": True}, 12),
    ({"tokens": 1024, "layers": 3, "single_layers": 3, "text": "in-sequence", "hidden": 256, "heads": 8,
      "ffn_type": "swiglu"}, 16),           # the current blocks: layouts the trainer refuses are 'unsupported'
])
def test_vectorised_equals_reference(flags, gpus):
    space = Space(build_spec(flags=flags), SearchOptions(allow_window=True, global_batch_range=(1, 4096)))
    assert _compare(space, gpus, 250) > 20


def test_compact_and_prefilter_agree_with_full_evaluation():
    space = Space(build_spec(flags={"frames": 960, "res": 256}), SearchOptions(micro_batch=(1, 2)))
    x, pre = space.candidates(200)
    assert pre.sum() == 0
    full = space.evaluate(200, x, compact=False)
    compact = space.evaluate(200, x)
    assert (full["reason"] == compact["reason"]).all()
    ok = full["reason"] == OK
    assert np.array_equal(full["time_s"][ok], compact["time_s"][ok])
    xs, pre = space.candidates(200, prefilter=True)
    counts = np.bincount(space.evaluate(200, xs)["reason"], minlength=len(REASONS)) + pre
    assert (counts == np.bincount(full["reason"], minlength=len(REASONS))).all()


def test_seed_finds_a_layout_that_fits_an_a100_80g():
    spec = build_spec(flags={"frames": 960, "res": 256, "gpu": "a100-80g"})
    out = plan(spec, (200, 300, 400), budget=False, sensitivity=False).to_json()
    assert set(out) >= {"spec", "objective", "gpu_counts", "best"}
    for c in out["gpu_counts"]:
        assert c["ranked"], c
        best = c["ranked"][0]
        assert best["memory_gib"]["fits"] and best["memory_gib"]["total"] <= 80 * 0.9
        assert best["tp"] * best["pp"] * best["cp"] * best["dp"] == best["gpus_used"] <= c["gpus"]
        assert best["global_batch"] == best["micro_batch"] * best["microbatches"] * best["dp"]
        assert sum(c["rejected"].values()) + c["feasible"] == c["evaluated"]
        assert set(c["rejected"]) == {"tp_over_node", "divisibility", "batch", "memory", "unsupported"}
        assert c["why_best"].startswith("The winner")
        days = [e["train"]["days"] for e in c["ranked"]]
        assert days == sorted(days)
    assert out["best"]["gpus"] == 400                   # fastest objective: more GPUs, fewer days


def test_ranked_entry_matches_the_scalar_planner():
    """The winner's numbers are what estimate() computes for the same layout."""
    from soraplan.planner.memory import memory
    from soraplan.planner.step import step_time

    spec = build_spec(flags={"frames": 960, "res": 256})
    space = Space(spec)
    best = search_count(space, 200, 1e7).to_json()["ranked"][0]
    s2 = space.variant("full", tp=best["tp"], pp=best["pp"], vpp=best["vpp"], cp=best["cp"], dp=best["dp"],
                       sequence_parallel=best["sequence_parallel"], micro_batch=best["micro_batch"],
                       global_batch=best["global_batch"], recompute=best["recompute"],
                       distributed_optimizer=best["distributed_optimizer"])
    assert step_time(s2).time_s == pytest.approx(best["step"]["time_s"], rel=1e-9)
    assert memory(s2).total / 2**30 == pytest.approx(best["memory_gib"]["total"], rel=1e-9)


def test_infeasible_space_gives_a_clear_message():
    # a ~175 B-parameter DiT on one node of 40 GB cards: even the sharded weights do not fit
    spec = build_spec(flags={"frames": 960, "res": 256, "gpu": "a100-40g", "layers": 96, "hidden": 12288,
                             "heads": 96, "ffn_hidden": 49152})
    out = plan(spec, (8,), budget=False, sensitivity=False).to_json()
    c = out["gpu_counts"][0]
    assert c["ranked"] == []
    assert "no layout fits on 8 x a100-40g" in c["message"] and "GiB per GPU" in c["message"]
    assert out["best"] is None and "no GPU count" in out["best_reason"]


def test_batch_and_tp_rules():
    spec = build_spec(flags={"frames": 960, "res": 256})
    c = search_count(Space(spec, SearchOptions(global_batch_range=(10**6, 2 * 10**6))), 64, 1e7).to_json()
    assert c["ranked"] == [] and "global batch" in c["message"]
    c = search_count(Space(spec, SearchOptions(max_tp_in_node=2)), 64, 1e7).to_json()
    assert all(e["tp"] <= 2 for e in c["ranked"])
    assert c["rejected"]["tp_over_node"] > 0


def test_objectives():
    spec = build_spec(flags={"frames": 960, "res": 256})
    cost = plan(spec, (64, 128), objective="cost", budget=False, sensitivity=False).to_json()
    assert cost["best"]["train"]["cost_usd"] == min(c["ranked"][0]["train"]["cost_usd"] for c in cost["gpu_counts"])
    dl = plan(spec, (64, 128, 256), objective="deadline", deadline_days=40, budget=False, sensitivity=False).to_json()
    ok = [c for c in dl["gpu_counts"] if c["ranked"][0]["train"]["days"] <= 40]
    assert dl["best"]["gpus"] == min(c["gpus"] for c in ok)
    with pytest.raises(UserError, match="deadline-days"):
        plan(spec, (64,), objective="deadline", budget=False, sensitivity=False)
    with pytest.raises(UserError, match="objective"):
        plan(spec, (64,), objective="fastest", budget=False, sensitivity=False)
    with pytest.raises(UserError, match="headroom"):
        SearchOptions(headroom=1.5)


def test_why_best_names_the_differences():
    from dataclasses import replace

    from soraplan.planner.results import LayoutMemory, LayoutStep, LayoutTrain, RankedLayout

    zero = {k: 0.0 for k in ("compute_s", "gemm_s", "attention_s", "elementwise_s", "recompute_s", "tp_comm_s",
                             "cp_comm_s", "cp_comm_total_s", "dp_comm_s", "dp_comm_total_s", "pp_bubble_s", "pp_p2p_s",
                             "optimizer_s", "efficiency", "mfu", "time_s", "samples_per_s")}
    base = RankedLayout(gpus_used=8, tp=8, pp=1, vpp=1, cp=1, dp=1, micro_batch=1, microbatches=1, global_batch=8,
                        sequence_parallel=True, recompute="none", distributed_optimizer=True, attention="full",
                        memory_gib=LayoutMemory(0, 0, 0, 0, 0, total=50.0, capacity=80, usable=72, fits=True),
                        train=LayoutTrain(samples=1, steps=1, days=10.0, gpu_hours=0, cost_usd=0),
                        step=LayoutStep(**zero, samples_per_step=8))
    run = replace(base, recompute="full", train=replace(base.train, days=12.0),
                  step=replace(base.step, gemm_s=0.08, attention_s=0.016))
    text = why_best([base, run])
    assert "recompute full -> none" in text and "16.7 %" in text and "10.00 vs 12.00 days" in text
    assert "10.00 ms more GEMM compute" in text and "2.00 ms more attention compute" in text


def test_deadline_without_counts_scans_gpu_counts():
    from soraplan.planner.plan import DEADLINE_SCAN

    spec = build_spec(flags={"frames": 960, "res": 256})
    out = plan(spec, None, objective="deadline", deadline_days=30, budget=False, sensitivity=False, top=1).to_json()
    assert [c["gpus"] for c in out["gpu_counts"]] == list(DEADLINE_SCAN)
    g = out["best"]["gpus"]
    assert out["best"]["train"]["days"] <= 30
    smaller = [c for c in out["gpu_counts"] if c["gpus"] < g and c["ranked"]]
    assert all(c["ranked"][0]["train"]["days"] > 30 for c in smaller)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.sampled_from([8, 96, 960]), res=st.sampled_from([128, 256, 512]),
       layers=st.sampled_from([4, 12, 28, 40]), heads=st.sampled_from([8, 16, 24]),
       gpu=st.sampled_from(["a100-40g", "a100-80g", "h100-sxm", "l40s"]), gpus=st.integers(1, 600))
def test_random_specs_plan_or_explain(frames, res, layers, heads, gpu, gpus):
    """Any valid spec and GPU count: a ranked list of fitting layouts, or a message — never an exception."""
    spec = build_spec(flags={"frames": frames, "res": res, "layers": layers, "heads": heads, "hidden": heads * 64,
                             "ffn_hidden": heads * 256, "gpu": gpu})
    c = search_count(Space(spec, SearchOptions(micro_batch=(1, 2), global_batch_range=(1, 4096))), gpus, 1e6).to_json()
    assert c["ranked"] or c["message"].startswith("no layout fits")
    for e in c["ranked"]:
        assert e["memory_gib"]["fits"] and e["step"]["time_s"] > 0 and 0 < e["step"]["mfu"] < 1
