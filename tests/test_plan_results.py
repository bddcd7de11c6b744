"""Typed planner results: to_json is the JSON contract; format_layout's three styles; the memory core on
scalars and arrays; the shared CLI parsing; the launchers read the layout from the Spec."""

import json

import numpy as np
import pytest

from soraplan.planner import build_spec
from soraplan.planner.errors import UserError
from soraplan.planner.estimate import estimate
from soraplan.planner.memory import memory, memory_constants, memory_terms
from soraplan.planner.params import params_per_gpu
from soraplan.planner.rank import format_layout, search_count
from soraplan.planner.results import Layout, Plan
from soraplan.planner.search import SearchOptions, Space


@pytest.fixture(scope="module")
def small_plan() -> Plan:
    from soraplan.planner.plan import plan

    spec = build_spec(flags={"frames": 96, "res": 128})
    return plan(spec, (16, 32), options=SearchOptions(micro_batch=(1, 2)), budget=True, sensitivity=True)


def test_plan_to_json_keys_and_types(small_plan):
    out = small_plan.to_json()
    assert list(out) == ["spec", "objective", "deadline_days", "search", "gpu_counts", "best", "best_reason", "budget",
                         "sensitivity"]
    assert json.loads(json.dumps(out)) == out          # plain JSON types only (no tuples, numpy or models)
    best = out["best"]
    assert list(best)[-1] == "gpus" and list(best)[:3] == ["tp", "pp", "vpp"]
    assert best == {**out["gpu_counts"][[c["gpus"] for c in out["gpu_counts"]].index(best["gpus"])]["ranked"][0],
                    "gpus": best["gpus"]}
    assert out["budget"]["statement"] and "message" not in out["gpu_counts"][0]
    assert small_plan.best is not None and small_plan.best.train.days == best["train"]["days"]


def test_infeasible_count_keeps_its_message_key():
    spec = build_spec(flags={"frames": 960, "res": 256})
    c = search_count(Space(spec, SearchOptions(global_batch_range=(10**6, 2 * 10**6))), 64, 1e7)
    out = c.to_json()
    assert list(out) == ["gpus", "evaluated", "feasible", "rejected", "ranked", "why_best", "message"]
    assert out["ranked"] == [] and c.message == out["message"]


def test_estimate_to_json_matches_the_attributes():
    e = estimate(build_spec(flags={"frames": 960, "res": 256, "tp": 8}))
    out = e.to_json()
    assert out["memory_gib"]["total"] == e.memory_gib.total and out["train"]["days"] == e.train.days
    assert out["seed_claim"]["gpus"] == [200, 400] and out["hardware"]["name"] == e.hardware.name
    assert "seed_claim" not in estimate(build_spec(flags={"frames": 96, "res": 128}), compare=False).to_json()


def test_format_layout_styles():
    lay = Layout(tp=8, pp=2, vpp=2, cp=1, dp=16, micro_batch=1, microbatches=8, global_batch=128,
                 sequence_parallel=True, recompute="selective", distributed_optimizer=True, attention="full")
    assert format_layout(lay) == "tp=8 pp=2 vpp=2 cp=1 dp=16 mb=1 gb=128 SP recompute=selective dist-opt"
    assert format_layout(lay, "words") == ("TP 8 × PP 2 (virtual 2) × CP 1 × DP 16 (micro-batch 1, global batch 128, "
                                           "sequence parallel, selective recompute, distributed optimizer)")
    assert format_layout(lay, "short") == "TP8·PP2v2·CP1·DP16 mb1 sel-rc"
    assert format_layout(Layout.from_json({"tp": 2, "pp": 1, "cp": 1, "dp": 4}), "short") == "TP2·PP1·CP1·DP4 mb1"
    with pytest.raises(ValueError, match="style"):
        format_layout(lay, "fancy")


@pytest.mark.parametrize("flags", [{"frames": 96, "res": 128, "tp": 2, "dp": 4, "cp": 2},
                                   {"frames": 96, "res": 128, "distributed_optimizer": False, "dp": 8}])
def test_memory_core_on_scalars_and_arrays_agree(flags):
    spec = build_spec(flags=flags)
    p = spec.parallel
    m = memory(spec)
    c = memory_constants(spec)
    arr = memory_terms(np, c, np.array([params_per_gpu(spec)] * 2, dtype=float), np.array([p.dp_size] * 2),
                       np.array([p.cp] * 2), np.array([p.distributed_optimizer] * 2), np.array([m.activations] * 2))
    for key in ("weights", "grads", "optimizer", "activations"):
        assert arr[key][1] == getattr(m, key)
    assert arr["total"][0] == m.total


def test_space_declares_its_tables():
    space = Space(build_spec(flags={"frames": 96, "res": 128}), SearchOptions(micro_batch=(1,)))
    declared = set(space.__dataclass_fields__)
    assert set(vars(space)) <= declared, set(vars(space)) - declared


def test_cli_parsing_helpers():
    from soraplan.cli.common import parse_gpu_counts, search_options

    assert parse_gpu_counts("200, 300,400") == (200, 300, 400)
    with pytest.raises(UserError, match="--gpus: comma-separated GPU counts expected"):
        parse_gpu_counts("a,b")
    with pytest.raises(UserError, match="--gpus: positive GPU counts expected"):
        parse_gpu_counts("0")
    o = search_options({"tp": 4, "sequence_parallel": 1, "pp": None}, headroom=0.2)
    assert o.tp == (4,) and o.sequence_parallel == (True,) and o.pp is None and o.headroom == 0.2


def test_launchers_read_the_layout_from_the_spec():
    from soraplan.launch.allocation import allocate
    from soraplan.launch.k8s_render import layout_from_spec
    from soraplan.launch.options import LaunchOptions

    spec = build_spec(flags={"gpus": 32, "tp": 4, "gpu": "h100-sxm"})
    a = allocate(spec, LaunchOptions())
    assert (a.world, a.nodes, a.tasks_per_node) == (32, 4, 8)
    lay = layout_from_spec(spec, 4)
    assert (lay.world, lay.nodes, lay.gpus_per_node, lay.tp, lay.dp) == (32, 8, 4, 4, 8)
