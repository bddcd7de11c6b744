"""validate --scale 6b: the real 6B per rank at the seed's winning layouts, one process playing one rank of a
world of 8 (and of the plan's 200 GPUs, dp = 25) under torch's fake process group (meta device). Per rank:
parameters, weight bytes and the trainer's distributed optimizer (state, shard, padded buffers, DP-CP
traffic) exact, saved bytes within 1 %, communication bytes exact, every collective shape-consistent; a
wrong CP divisor, optimizer formula, optimizer shard or DP formula makes validate exit 1."""

import json
from dataclasses import replace

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]

# the plan's winner (tp1·cp8 p2p) on its first rank, tp2·cp4 p2p + SP on the last rank of the world, and
# both stages of tp1·pp2·cp4 (built only); then the plan's tp1·cp8 at 200 GPUs (dp 25: built and the
# optimizer stepped) on its last rank
MEASURED = (((1, 1, 8), 0), ((2, 1, 4), 7), ((1, 2, 4), 0), ((1, 2, 4), 7))
PLAN_RANK = 199


def _jobs():
    from soraplan.validation.measure_fake import plan_jobs, seed_jobs

    out = []
    for (tp, pp, cp), rank in MEASURED:
        name, spec, _ = next(j for j in seed_jobs() if (j[1].parallel.tp, j[1].parallel.pp, j[1].parallel.cp,
                                                        j[1].parallel.cp_comm) == (tp, pp, cp, "p2p"))
        out.append((name, spec, rank, False))
    name, spec, _ = next(j for j in plan_jobs() if j[1].parallel.gpus == 200 and j[1].parallel.pp == 1)
    return out + [(name, spec, PLAN_RANK, True)]


@pytest.fixture(scope="module")
def measured():
    from soraplan.validation.measure_fake import run_fake

    jobs = _jobs()
    return jobs, run_fake([(spec, rank, only) for _, spec, rank, only in jobs])


def _rows(measured):
    from soraplan.validation.measure_fake import fake_rows

    jobs, results = measured
    rows, by_name = [], {}
    for (name, spec, _, _), res in zip(jobs, results):
        by_name.setdefault(name, (spec, []))[1].append(res)
    for name, (spec, res) in by_name.items():
        rows += fake_rows(name, spec, res)
    return rows


def _state(rows, rank):
    """The optimizer-state row of `rank` (its name says how the state is sharded)."""
    return next(r for r in rows if r.rank == rank and r.quantity.startswith(f"rank {rank} optimizer state bytes"))


def test_the_6b_per_rank_matches_the_planner(measured):
    from soraplan.planner.params import total_params

    jobs, results = measured
    rows = _rows(measured)
    assert rows and all(r.ok for r in rows), [r.as_dict() for r in rows if not r.ok]
    assert {r.rank for r in rows} == {0, 7, PLAN_RANK, None}
    winner = [r for r in rows if r.rank == 0]
    assert winner[0].layout == {"tp": 1, "pp": 1, "vpp": 1, "cp": 8, "cp_comm": "p2p", "dp": 1, "sp": False,
                                "distributed_optimizer": True}
    by_q = {(r.rank, r.quantity): r for r in rows if r.layout["pp"] == 1}
    assert by_q[(0, "rank 0 params")].measured == total_params(jobs[0][1])      # cp replicates every parameter
    assert by_q[(7, "rank 7 params")].measured < total_params(jobs[1][1]) * 0.51  # tp=2 shards the blocks
    for rank in (0, 7):
        saved = by_q[(rank, f"rank {rank} saved bytes, whole micro-batch")]
        assert saved.measured > 20 * 2**30 and abs(saved.error) <= 0.01
        # the trainer's distributed optimizer over the dp·cp = cp ranks: master + 2 moments (fp32) of its shard,
        # fp32 main grads reduce-scattered over the padded buffer, the bf16 shard all-gathered
        cp = 8 if rank == 0 else 4
        shard = -(-by_q[(rank, f"rank {rank} params")].measured // cp)
        assert by_q[(rank, f"rank {rank} optimizer shard (parameters)")].measured == shard
        assert _state(rows, rank).measured == 12 * shard and f"dp·cp = {cp};" in _state(rows, rank).quantity
        assert by_q[(rank, "comm bytes reduce_scatter_tensor DP-CP")].measured == 4 * cp * shard
        assert by_q[(rank, "comm bytes all_gather_into_tensor DP-CP")].measured == 2 * shard
        assert by_q[(rank, "comm bytes isend CP")].measured > 0
        assert by_q[(rank, "comm bytes irecv CP")].measured == by_q[(rank, "comm bytes isend CP")].measured
    assert by_q[(7, "comm bytes reduce_scatter_tensor TP")].measured > 0
    assert all(res["collectives"] > 100 and res["shape_errors"] == [] for res in results[:2])
    stages = {r.quantity: r for r in rows if r.layout["pp"] == 2}
    first, last = stages["rank 0 params (stage 0 of 2)"], stages["rank 7 params (stage 1 of 2)"]
    assert first.measured != last.measured           # the patch embedding and the final layer differ
    assert stages["most loaded stage params"].measured == max(first.measured, last.measured)
    blocks = stages["rank 0 saved bytes, transformer block (first stage, one micro-batch)"]
    assert blocks.tolerance == 0.01 and blocks.measured > 20 * 2**30 and abs(blocks.error) <= 0.01
    # the plan's winner at 200 GPUs: the shard over dp·cp = 25·8, the buffers padded to a multiple of 200
    plan = {r.quantity: r for r in rows if r.rank == PLAN_RANK}
    assert plan[f"rank {PLAN_RANK} params"].layout["dp"] == 25
    n = total_params(jobs[-1][1])
    assert plan[f"rank {PLAN_RANK} optimizer shard (parameters)"].measured == -(-n // 200) != n / 200
    assert _state(rows, PLAN_RANK).measured == 12 * -(-n // 200)
    assert plan[f"rank {PLAN_RANK} flat gradient buffer bytes (padded, main grads)"].measured == 4 * 200 * -(-n // 200)
    assert results[-1]["step_shape_errors"] == [] and results[-1]["step_collectives"] == 2


def test_a_wrong_cp_divisor_or_optimizer_formula_fails(measured, monkeypatch):
    import soraplan.planner.cp as cp
    import soraplan.planner.memory as memory

    monkeypatch.setattr(cp, "cp_extra", lambda xp, c, *a: (0.0, 0.0))       # every saved tensor divided by cp
    monkeypatch.setattr(cp, "cp_outside_bytes", lambda spec, outside: 0.0)
    failed = {(r.rank, r.quantity) for r in _rows(measured) if not r.ok}
    assert {(0, "rank 0 saved bytes, whole micro-batch"), (7, "rank 7 saved bytes, whole micro-batch")} <= failed
    monkeypatch.undo()
    original = memory.memory_constants
    monkeypatch.setattr(memory, "memory_constants",
                        lambda spec: replace(original(spec), optimizer_bytes_per_param=8))   # no master copy
    rows = _rows(measured)
    failed = {(r.layout["pp"], r.quantity) for r in rows if not r.ok}
    state = {(r.layout["pp"], r.quantity) for r in rows if " optimizer state bytes " in r.quantity}
    assert failed == state and len(state) == 5     # ranks 0 and 7 at pp 1 and 2, and the plan's rank


def test_an_optimizer_shard_over_dp_only_or_a_wrong_dp_formula_fails(measured, monkeypatch):
    import soraplan.planner.comm as comm
    import soraplan.planner.memory as memory

    monkeypatch.setattr(memory, "optimizer_shard", lambda xp, n, dp, cp, d: xp.ceil(n / xp.where(d, dp, 1)))
    rows = _rows(measured)
    failed = {(r.rank, r.quantity) for r in rows if not r.ok}
    for k in (0, 7, PLAN_RANK):
        assert {(k, _state(rows, k).quantity), (k, f"rank {k} optimizer shard (parameters)")} <= failed
    monkeypatch.undo()
    original = comm.dp_volumes

    def whole_buffer(xp, k, n, dp, cp, d):     # all-gathers the whole buffer instead of the shard
        vols = original(xp, k, n, dp, cp, d)
        return {**vols, "all_gather_into_tensor": vols["all_gather_into_tensor"] * dp * cp}

    monkeypatch.setattr(comm, "dp_volumes", whole_buffer)
    failed = {(r.rank, r.quantity) for r in _rows(measured) if not r.ok}
    assert failed == {(k, "comm bytes all_gather_into_tensor DP-CP") for k in (0, 7, PLAN_RANK)}


def test_validate_scale_6b_cli(measured, monkeypatch):
    """The CLI wiring (the measurement of the fixture stands in for the subprocess); exit 1 on a wrong term."""
    from typer.testing import CliRunner

    import soraplan.planner.cp as cp
    import soraplan.planner.memory as memory
    from soraplan.cli import app
    from soraplan.validation import measure_fake

    jobs, results = measured
    layouts = tuple(({"tp": s.parallel.tp, "cp": s.parallel.cp, "cp_comm": s.parallel.cp_comm,
                      "sequence_parallel": s.parallel.sequence_parallel}, (rank,)) for _, s, rank, _ in jobs[:2])
    stages = (({"tp": 1, "pp": 2, "cp": 4, "cp_comm": "p2p", "sequence_parallel": False, "gpus": 8}, (0, 7)),)
    plan = (({"tp": 1, "cp": 8, "cp_comm": "p2p", "sequence_parallel": False, "gpus": 200}, (PLAN_RANK,)),)
    monkeypatch.setattr(measure_fake, "SEED_LAYOUTS", layouts)
    monkeypatch.setattr(measure_fake, "STAGE_LAYOUTS", stages)
    monkeypatch.setattr(measure_fake, "PLAN_LAYOUTS", plan)
    monkeypatch.setattr(measure_fake, "run_fake", lambda flat, timeout_s=0: results)
    ok = CliRunner().invoke(app, ["validate", "--scale", "6b", "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["ok"] and {r["rank"] for r in data["rows"]} == {0, 7, PLAN_RANK, None}
    assert all(r["layout"]["cp"] in (4, 8) for r in data["rows"])
    with monkeypatch.context() as m:
        m.setattr(cp, "cp_outside_bytes", lambda spec, outside: 0.0)
        m.setattr(cp, "cp_extra", lambda xp, c, *a: (0.0, 0.0))
        bad = CliRunner().invoke(app, ["validate", "--scale", "6b", "--json"])
    assert bad.exit_code == 1
    with monkeypatch.context() as m:          # the optimizer state sharded over dp only
        m.setattr(memory, "optimizer_shard", lambda xp, n, dp, cp, d: xp.ceil(n / xp.where(d, dp, 1)))
        bad = CliRunner().invoke(app, ["validate", "--scale", "6b", "--json"])
    assert bad.exit_code == 1


@pytest.mark.parametrize("args", [["--scale", "7b"], ["--scale", "6b", "--quick"], ["--scale", "6b", "--tp", "2"]])
def test_validate_scale_refusals(args):
    from typer.testing import CliRunner

    from soraplan.cli import app

    res = CliRunner().invoke(app, ["validate", *args])
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "--scale" in res.stderr


def test_shape_check_reports_inconsistent_collectives():
    import torch

    from soraplan.validation.measure_fake import _ShapeCheck

    check = _ShapeCheck()
    a, b = torch.empty(4, 2, 8, device="meta"), torch.empty(3, 2, 8, device="meta")
    check.op("alltoall_base_", (a, b, None))
    check.op("send", ([a], None, 1, 0))
    check.op("recv_", ([b], None, 1, 0))
    check.op("send", ([torch.empty(2)], None, 1, 0))     # a buffer off the meta device
    assert len(check.finish()) == 3 and check.calls == 4
