"""Pipeline parallel through megatron's 1F1B schedule, and its interleaved form (vpp model chunks per rank),
on gloo: equal to pp=1 (loss and every gradient), and a vpp=2 run stopped and resumed from its per-rank
checkpoint reproduces the uninterrupted loss curve."""

import json

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]


def test_pp2_1f1b_and_interleaved_equal_pp1_loss_and_grads():
    from megatron_fixtures import check_rows

    rows = check_rows("pp_check")
    assert all(row["ok"] and row["max_rel_grad_err"] < 1e-4 for row in rows), rows
    assert any(row["case"].get("vpp") == 2 for row in rows)


def _losses(run_dir) -> dict[int, float]:
    return {rec["step"]: rec["loss"] for rec in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())}


def test_interleaved_run_resumes_from_its_model_chunks(tmp_path):
    from megatron_fixtures import torchrun

    common = ["-m", "soraplan", "train", "--tiny", "--pp", "2", "--vpp", "2", "--global-batch", "4"]
    whole = tmp_path / "whole"
    r = torchrun(2, [*common, "--steps", "3", "--save-every", "0", "--run-dir", str(whole)], timeout_s=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    run = tmp_path / "run"
    r = torchrun(2, [*common, "--steps", "2", "--save-every", "2", "--run-dir", str(run)], timeout_s=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = torchrun(2, [*common, "--steps", "3", "--save-every", "0", "--run-dir", str(run)], timeout_s=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "resumed from step 2" in r.stdout
    a, b = _losses(run), _losses(whole)
    assert a.keys() == b.keys() == {1, 2, 3}
    assert all(abs(a[k] - b[k]) <= 1e-6 * abs(b[k]) for k in a), (a, b)
    # the chunks' checkpoint does not load into a run without interleaving: one line, exit 2 on every rank
    r = torchrun(2, ["-m", "soraplan", "train", "--tiny", "--pp", "2", "--global-batch", "4", "--steps", "4",
                     "--run-dir", str(run)], timeout_s=400)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "exitcode: 2" in out and "vpp 2 (this run: 1)" in out, out[-3000:]
