"""Pipeline parallel through megatron's 1F1B schedule on gloo equals pp=1 (loss and every gradient)."""

import json

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]


def test_pp2_1f1b_equals_pp1_loss_and_grads():
    from megatron_fixtures import torchrun

    from soraplan.models.pp_check import CASES

    r = torchrun(2, ["-m", "soraplan.models.pp_check"])
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(rows) == len(CASES)
    assert all(row["ok"] and row["max_rel_grad_err"] < 1e-4 for row in rows), rows
