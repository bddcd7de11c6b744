"""validate under data parallelism with the trainer's optimizer: per-rank parameters and optimizer-state
bytes and the optimizer step's DP-CP traffic, exact; a wrong DP formula or shard makes validate exit 1."""

import json

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]


def _case(name_start):
    from soraplan.validation.measure_matrix import MATRIX

    return next(c for c in MATRIX if c.name.startswith(name_start))


def test_dp_rows_carry_layout_and_rank_and_pass_exactly():
    from soraplan.validation.measure_dp import dp_rows, run_dp
    from soraplan.validation.measure_matrix import spec_for

    cases = [_case("DP=3, distributed optimizer, padded")]
    ranks = run_dp([spec_for(c) for c in cases])[0]
    spec = spec_for(cases[0])
    rows = dp_rows(cases[0].name, spec, ranks)
    assert rows and all(r.ok for r in rows)
    assert {r.rank for r in rows} == {0, 1, 2}
    assert rows[0].layout == {"tp": 1, "pp": 1, "vpp": 1, "cp": 1, "cp_comm": "p2p", "dp": 3, "sp": False,
                              "distributed_optimizer": True}
    by = {(r.quantity, r.rank): r for r in rows}
    opt = by[("rank 1 optimizer state bytes", 1)]
    assert opt.tolerance == 0 and opt.measured == opt.predicted > 0
    # the padding is real: 189,664 parameters over 3 ranks -> 63,222 per shard, 2 padding elements
    rs = by[("comm bytes reduce_scatter_tensor DP-CP", 2)]
    assert rs.measured == rs.predicted == 3 * 63_222 * 4 and opt.measured == 63_222 * 8


def test_wrong_dp_formula_makes_validate_exit_1(monkeypatch):
    from typer.testing import CliRunner

    import soraplan.planner.comm as comm
    from soraplan.cli import app
    from soraplan.validation import measure_matrix as mm

    case = _case("DP=2, distributed optimizer")
    monkeypatch.setattr(mm, "cases", lambda quick=False: [case])
    runner = CliRunner()
    good = runner.invoke(app, ["validate", "--json"])
    assert good.exit_code == 0, good.output
    rows = json.loads(good.stdout)["rows"]
    assert {r["quantity"] for r in rows if r["rank"] == 0} >= {
        "rank 0 params", "rank 0 optimizer state bytes", "comm bytes reduce_scatter_tensor DP-CP",
        "comm bytes all_gather_into_tensor DP-CP"}
    original = comm.dp_volumes

    def gather_everything(xp, k, n_params, dp, cp, dist):   # wrong: each rank all-gathers the whole buffer
        out = dict(original(xp, k, n_params, dp, cp, dist))
        out["all_gather_into_tensor"] = out["all_gather_into_tensor"] * dp * cp
        return out

    monkeypatch.setattr(comm, "dp_volumes", gather_everything)
    bad = runner.invoke(app, ["validate", "--json"])
    assert bad.exit_code == 1, bad.output
    failed = {(r["quantity"], r["rank"]) for r in json.loads(bad.stdout)["rows"] if not r["ok"]}
    assert failed == {("comm bytes all_gather_into_tensor DP-CP", 0), ("comm bytes all_gather_into_tensor DP-CP", 1)}


def test_optimizer_shard_without_padding_fails(monkeypatch):
    """dp=3: the optimizer state priced as N/3 (no padding of the flat buffer) is 2 elements short."""
    import soraplan.planner.memory as mem
    from soraplan.validation.measure_dp import dp_rows, run_dp
    from soraplan.validation.measure_matrix import spec_for

    case = _case("DP=3, distributed optimizer, padded")
    spec = spec_for(case)
    ranks = run_dp([spec])[0]
    monkeypatch.setattr(mem, "optimizer_shard", lambda xp, n, dp, cp, dist: n / xp.where(dist, dp * cp, 1))
    failed = {r.quantity for r in dp_rows(case.name, spec, ranks) if not r.ok}
    assert failed == {"rank 0 optimizer state bytes", "rank 1 optimizer state bytes", "rank 2 optimizer state bytes"}
