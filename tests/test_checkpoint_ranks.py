"""Two ranks under torchrun (CPU, gloo): the resume decision is rank 0's, every rank loads that step or
every rank stops with one line; a rank that sees another run directory never leaves the others waiting."""

import json
import shutil
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]

VIEW = str(Path(__file__).with_name("rank_view_train.py"))
COMMON = ["--tiny", "--tp", "2", "--steps", "4", "--save-every", "2", "--keep-last", "5", "--log-every", "100"]


def _losses(run) -> dict[int, float]:
    return {json.loads(x)["step"]: json.loads(x)["loss"] for x in (Path(run) / "log.jsonl").read_text().splitlines()}


def _errors(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.startswith("error:")]


@pytest.fixture(scope="module")
def tp2_run(tmp_path_factory):
    from megatron_fixtures import torchrun

    run = tmp_path_factory.mktemp("tp2") / "run"
    r = torchrun(2, ["-m", "soraplan", "train", *COMMON, "--run-dir", str(run)])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    files = json.loads((run / "checkpoints" / "step-00000004" / "meta.json").read_text())["files"]
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata"} <= set(files)
    return run, _losses(run)


def test_a_flip_in_rank_1s_shard_makes_every_rank_fall_back(tp2_run, tmp_path):
    """Rank 1 alone verifies its shard; its verdict is gathered, so both ranks load step 2 together."""
    from megatron_fixtures import torchrun

    ref_run, ref = tp2_run
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    (run / "done").unlink()
    shard = run / "checkpoints" / "step-00000004" / "__1_0.distcp"
    data = bytearray(shard.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 16] = bytes(b ^ 0x5A for b in data[mid:mid + 16])
    shard.write_bytes(bytes(data))
    r = torchrun(2, ["-m", "soraplan", "train", *COMMON, "--run-dir", str(run)], timeout_s=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    warn = [x for x in r.stdout.splitlines() if x.startswith("warning: checkpoint")]
    assert len(warn) == 1 and "__1_0.distcp: sha256 mismatch" in warn[0], r.stdout
    assert "resumed from step 2" in r.stdout
    assert _losses(run) == ref
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def _view_without(run: Path, view: Path, hidden: str) -> None:
    """`view`: the run directory as a node would see it whose copy of checkpoints/ lacks `hidden`."""
    view.mkdir()
    for p in run.iterdir():
        if p.name != "checkpoints":
            (view / p.name).symlink_to(p)
    (view / "checkpoints").mkdir()
    for p in (run / "checkpoints").iterdir():
        if p.name != hidden:
            (view / "checkpoints" / p.name).symlink_to(p)


def test_a_rank_that_cannot_see_rank_0s_choice_stops_every_rank_with_one_line(tp2_run, tmp_path):
    from megatron_fixtures import torchrun

    ref_run, _ = tp2_run
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    (run / "done").unlink()
    (run / ".lock").touch()
    _view_without(run, tmp_path / "view", "step-00000004")
    t0 = time.time()
    r = torchrun(2, [VIEW, *COMMON, "--run-dir", str(run)], timeout_s=240,
                 env={"SORAPLAN_TEST_VIEW_RANK": "1", "SORAPLAN_TEST_VIEW_DIR": str(tmp_path / "view")})
    assert r.returncode != 0 and time.time() - t0 < 200
    errs = _errors(r.stderr)
    assert len(errs) == 2 and errs[0] == errs[1], r.stderr[-3000:]   # the same line from each rank, nothing else
    for e in errs:
        assert e.startswith("error: resume: rank 1 cannot read checkpoint") and "step-00000004" in e
        assert f"{tmp_path / 'view' / 'checkpoints' / 'step-00000004'}: no such directory" in e
        assert "same filesystem on every rank" in e
    assert "Traceback (most recent call last):\n  File" not in r.stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    assert _losses(run) == _losses(ref_run)                   # nothing trained, nothing rewritten


def test_a_rank_with_another_run_directory_stops_before_reading_checkpoints(tmp_path):
    from megatron_fixtures import torchrun

    other = tmp_path / "other"
    r = torchrun(2, [VIEW, *COMMON, "--steps", "1", "--run-dir", str(tmp_path / "run")], timeout_s=240,
                 env={"SORAPLAN_TEST_VIEW_RANK": "1", "SORAPLAN_TEST_VIEW_DIR": str(other)})
    assert r.returncode != 0
    errs = _errors(r.stderr)
    assert len(errs) == 2 and errs[0] == errs[1], r.stderr[-3000:]
    assert errs[0].startswith(f"error: run-dir: rank 1 does not see the run directory rank 0 locked (rank 0: {tmp_path / 'run'}, "
                              f"rank 1: {other},")
    assert not (tmp_path / "run" / "log.jsonl").exists() and not other.exists()
