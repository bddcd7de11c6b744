"""Pipeline parallel through megatron's 1F1B schedule on gloo equals pp=1 (loss and every gradient)."""

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]


def test_pp2_1f1b_equals_pp1_loss_and_grads():
    from megatron_fixtures import check_rows

    rows = check_rows("pp_check")
    assert all(row["ok"] and row["max_rel_grad_err"] < 1e-4 for row in rows), rows
