"""validate under context parallelism: real gloo ranks for each K/V exchange; per-rank rows carry their
layout and rank; the planner's CP terms are what makes them pass (without them validate exits 1)."""

import json

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]


def _case(name_start):
    from soraplan.validation.measure_matrix import MATRIX

    return next(c for c in MATRIX if c.name.startswith(name_start))


def test_cp_rows_carry_layout_and_rank_and_fail_without_the_cp_terms(monkeypatch):
    import soraplan.planner.cp as cp
    from soraplan.validation.measure_compare import tp_rows
    from soraplan.validation.measure_matrix import spec_for
    from soraplan.validation.measure_tp import run_tp

    case = _case("CP=2 all-gather (2")
    spec = spec_for(case)
    ranks = run_tp([spec])[0]
    rows = tp_rows(case.name, spec, ranks)
    assert rows and all(r.ok for r in rows)
    assert {r.rank for r in rows} == {0, 1}
    assert rows[0].layout == {"tp": 1, "pp": 1, "vpp": 1, "cp": 2, "cp_comm": "all-gather", "dp": 1, "sp": False,
                              "distributed_optimizer": True}
    # a wrong CP divisor: every saved tensor divided by cp (no gathered K/V, no whole-sequence final layer)
    monkeypatch.setattr(cp, "cp_extra", lambda xp, c, *a: (0.0, 0.0))
    monkeypatch.setattr(cp, "cp_outside_bytes", lambda spec, outside: 0.0)
    failed = {r.quantity for r in tp_rows(case.name, spec, ranks) if not r.ok}
    assert {"rank 0 saved bytes, whole micro-batch", "rank 1 saved bytes, transformer block"} <= failed


def test_wrong_cp_divisor_makes_validate_exit_1(monkeypatch):
    from typer.testing import CliRunner

    import soraplan.planner.cp as cp
    from soraplan.cli import app
    from soraplan.validation import measure_matrix as mm

    case = _case("CP=2 p2p ring")
    monkeypatch.setattr(mm, "cases", lambda quick=False: [case])
    original = cp.cp_constants

    def outside_over_cp(spec, outside):   # wrong: the final layer's whole-sequence tensors divided by cp
        c = original(spec, outside)
        return cp.CpConstants(c.kv_per_token, c.out_per_token, 0.0, c.input_per_token)

    monkeypatch.setattr(cp, "cp_constants", outside_over_cp)
    bad = CliRunner().invoke(app, ["validate", "--json"])
    assert bad.exit_code == 1, bad.output
    data = json.loads(bad.stdout)
    failed = [r for r in data["rows"] if not r["ok"]]
    assert failed and all(r["layout"]["cp"] == 2 and r["rank"] in (0, 1) for r in failed)
    assert {r["quantity"] for r in failed} == {"rank 0 saved bytes, whole micro-batch",
                                               "rank 1 saved bytes, whole micro-batch"}


def test_wrong_comm_formula_makes_validate_exit_1(monkeypatch):
    """TP=2 + SP: a communication model without the backward re-all-gather of the layer input fails."""
    from typer.testing import CliRunner

    import soraplan.planner.comm as comm
    from soraplan.cli import app
    from soraplan.validation import measure_matrix as mm

    case = next(c for c in mm.MATRIX if c.name.startswith("TP=2 + sequence parallel"))
    monkeypatch.setattr(mm, "cases", lambda quick=False: [case])
    runner = CliRunner()
    good = runner.invoke(app, ["validate", "--json"])
    assert good.exit_code == 0, good.output
    rows = json.loads(good.stdout)["rows"]
    measured = {r["quantity"]: r["measured"] for r in rows if r["rank"] == 0}
    assert measured["comm bytes all_gather_into_tensor TP"] > 0 and measured["comm bytes reduce_scatter_tensor TP"] > 0
    original = comm.comm_bytes

    def no_regather(spec):
        out = dict(original(spec))
        p, m = spec.parallel, spec.model
        x = spec.seq_len * p.micro_batch * m.hidden * spec.kernels.act_bytes
        out["all_gather_into_tensor TP"] -= m.layers * 3 * x // p.tp        # 4 collectives per sub-block, not 5
        return out

    monkeypatch.setattr(comm, "comm_bytes", no_regather)
    bad = runner.invoke(app, ["validate", "--json"])
    assert bad.exit_code == 1, bad.output
    failed = {(r["quantity"], r["rank"]) for r in json.loads(bad.stdout)["rows"] if not r["ok"]}
    assert failed == {("comm bytes all_gather_into_tensor TP", 0), ("comm bytes all_gather_into_tensor TP", 1)}
