"""Context parallel (K/V all-gathered over 2 gloo ranks, gradients summed over CP) equals cp=1."""

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]


def test_cp2_equals_cp1_loss_and_grads():
    from megatron_fixtures import check_rows

    rows = check_rows("cp_check")
    assert all(row["ok"] and row["max_rel_grad_err"] < 1e-4 for row in rows), rows


def test_cp_refuses_what_it_cannot_do(megatron_pg):
    from soraplan.models.build import build_model
    from soraplan.planner.config import build_spec
    from soraplan.planner.errors import UserError

    spec = build_spec(flags={"layers": 2, "hidden": 64, "heads": 4, "frames": 16, "res": 64, "cp": 2,
                             "attention": "window:1,2,2", "text_tokens": 8, "text_dim": 32})
    with pytest.raises(UserError, match="parallel.cp"):
        build_model(spec, device="meta")
