"""The CPU validation matrix passes at its tolerances: every configuration of `soraplan validate`
(parameters and matmul/attention FLOPs exact, saved activation bytes within 1 %, TP=2 ranks with and
without sequence parallel, the 6B on the meta device). About 40 s on 2 cores."""

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]

from soraplan.validation.measure_matrix import MATRIX  # noqa: E402  (light: no torch at import)


@pytest.fixture(scope="module")
def measured(megatron_pg):
    from soraplan.validation.measure_matrix import run_cases

    rows, errors = run_cases(list(MATRIX))
    return rows, errors


@pytest.mark.parametrize("name", [c.name for c in MATRIX])
def test_configuration_matches_the_planner(measured, name):
    rows, errors = measured
    assert not [e for e in errors if e["config"] in (name, "TP cases")]
    mine = [r for r in rows if r.config == name]
    assert mine, f"no rows measured for {name}"
    bad = [(r.quantity, r.measured, r.predicted) for r in mine if not r.ok]
    assert not bad
    compared = [r for r in mine if r.tolerance is not None]
    assert compared


def test_matrix_covers_meta_tp_and_every_quantity(measured):
    rows, _ = measured
    names = {r.config for r in rows}
    assert any("6B on meta" in n for n in names)
    assert sum(1 for n in names if n.startswith("TP=2")) == 2
    quantities = {r.quantity for r in rows}
    for q in ("FLOPs forward", "FLOPs backward (executed)", "FLOPs forward (fvcore)", "saved bytes, transformer block",
              "params total", "rank 0 params", "rank 1 saved bytes, transformer block"):
        assert q in quantities
    six = [r for r in rows if "6B on meta" in r.config]
    assert {r.quantity: r.measured for r in six}["params total"] == 6_131_825_792
