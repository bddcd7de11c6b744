"""Checkpoints that survive damage: checksums catch flipped and truncated bytes and the run resumes from
the next older checkpoint with the uninterrupted loss curve; re-saves never lose the old checkpoint;
keep-last; each step once in log.jsonl; stray folders and torn markers; one trainer per run directory."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.megatron

COMMON = ["--steps", "4", "--save-every", "2", "--keep-last", "5"]


def _train(args):
    from typer.testing import CliRunner

    from soraplan.cli import app

    return CliRunner().invoke(app, ["train", "--tiny", "--log-every", "100", *args])


def _log_steps(run) -> list[int]:
    return [json.loads(x)["step"] for x in (Path(run) / "log.jsonl").read_text().splitlines()]


def _losses(run) -> dict[int, float]:
    return {json.loads(x)["step"]: json.loads(x)["loss"] for x in (Path(run) / "log.jsonl").read_text().splitlines()}


def _weight_offset(ckpt_dir: Path, tmp: Path) -> tuple[Path, int, str]:
    """(shard file, byte offset, key) of the middle of the largest model weight stored in `ckpt_dir`."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(str(ckpt_dir), str(tmp / "flat.pt"))
    sd = torch.load(tmp / "flat.pt", weights_only=True)
    key, t = max(((k, v) for k, v in sd.items() if k.startswith("model.") and v.is_floating_point()),
                 key=lambda kv: kv[1].numel())
    raw = t.detach().contiguous().numpy().tobytes()
    for f in sorted(ckpt_dir.glob("*.distcp")):
        at = f.read_bytes().find(raw)
        if at >= 0:
            return f, at + len(raw) // 2, key
    raise AssertionError(f"{key} not found in the shards")


@pytest.fixture(scope="module")
def finished_run(megatron_pg, tmp_path_factory):
    """A 4-step run with checkpoints at steps 2 and 4; its losses are the uninterrupted reference."""
    run = tmp_path_factory.mktemp("ref") / "run"
    r = _train([*COMMON, "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    return run, _losses(run)


def _damage_flip(d: Path, tmp: Path) -> str:
    f, at, _ = _weight_offset(d, tmp)
    data = bytearray(f.read_bytes())
    data[at:at + 16] = bytes(b ^ 0xFF for b in data[at:at + 16])   # same size: only the checksum can tell
    f.write_bytes(bytes(data))
    return f"{f.name}: sha256 mismatch"


def _truncate(name: str, keep: int):
    def damage(d: Path, tmp: Path) -> str:
        f = d / name
        f.write_bytes(f.read_bytes()[:keep])
        return name
    return damage


@pytest.mark.parametrize("damage", [
    _damage_flip,
    _truncate("__0_0.distcp", 100),
    _truncate(".metadata", 10),
    _truncate("meta.json", 20),
    _truncate("complete", 5),
], ids=["flip-weight", "trunc-shard", "trunc-dcp-metadata", "trunc-meta", "trunc-complete"])
def test_damaged_latest_checkpoint_falls_back_and_reproduces_the_curve(finished_run, tmp_path, damage):
    ref_run, ref = finished_run
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    (run / "done").unlink()
    latest = run / "checkpoints" / "step-00000004"
    names = damage(latest, tmp_path)
    r = _train([*COMMON, "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    warn = [x for x in r.output.splitlines() if x.startswith("warning: checkpoint")]
    assert len(warn) == 1 and "step-00000004 is corrupted" in warn[0] and names in warn[0], r.output
    assert "resumed from step 2" in r.output
    assert _log_steps(run) == [1, 2, 3, 4]               # steps 3 and 4 re-run, each listed once
    assert _losses(run) == ref                           # the older checkpoint was loaded exactly
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    meta = json.loads((latest / "meta.json").read_text())  # the damaged checkpoint was replaced by a good one
    assert set(meta["files"]) == {".metadata", "__0_0.distcp"}


def test_flipped_weight_loads_silently_without_the_checksum(finished_run, tmp_path):
    """The flip above really lands in a weight: DCP alone reads the changed value without an error."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from soraplan.models import checkpoint as ckpt

    ref_run, _ = finished_run
    d = tmp_path / "step-00000004"
    shutil.copytree(ref_run / "checkpoints" / "step-00000004", d)
    f, _, key = _weight_offset(d, tmp_path)
    good = torch.load(tmp_path / "flat.pt", weights_only=True)[key]
    assert ckpt._verify_mine(d, ckpt.read_manifest(d), 0, 1) is None
    _damage_flip(d, tmp_path)
    dcp_to_torch_save(str(d), str(tmp_path / "flipped.pt"))                  # no error from DCP itself
    bad = torch.load(tmp_path / "flipped.pt", weights_only=True)[key]
    assert bad.shape == good.shape and not torch.equal(bad, good)
    assert ckpt._verify_mine(d, ckpt.read_manifest(d), 0, 1) == f"{f}: sha256 mismatch (the bytes changed after the checkpoint was written)"


def test_resave_of_a_step_sets_the_old_one_aside_until_the_new_one_is_in(megatron_pg, tmp_path, monkeypatch):
    import torch

    from soraplan.models import checkpoint as ckpt

    model = torch.nn.Linear(8, 8)
    opt = torch.optim.AdamW(model.parameters())
    final = ckpt.save(tmp_path, 2, model, opt, {}, 0, 0, keep_last=1)
    first = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    deleted = []
    real_rmtree = shutil.rmtree

    def watch(path, *a, **k):
        if ".old-" in Path(path).name:                    # deleting the old copy: the new one must be in place
            assert (final / "complete").is_file() and ckpt.read_manifest(final)["step"] == 2
            deleted.append(Path(path).name)
        return real_rmtree(path, *a, **k)

    monkeypatch.setattr(ckpt.shutil, "rmtree", watch)
    ckpt.save(tmp_path, 2, model, opt, {}, 0, 0, keep_last=1)
    assert len(deleted) == 1
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000002"]
    # a crash between the two renames: the complete old checkpoint is set aside, the new one not yet in
    real_replace = os.replace

    def crash(src, dst):
        if ckpt.TMP_RE.fullmatch(Path(src).name):        # the checkpoint folder's rename, not meta.json's
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(tmp_path, 2, model, opt, {}, 0, 0, keep_last=1)
    monkeypatch.setattr(ckpt.os, "replace", real_replace)
    assert not final.exists() and any(".old-" in p.name for p in (tmp_path / "checkpoints").iterdir())
    notes = ckpt.recover(tmp_path)
    assert len(notes) == 1 and "restored" in notes[0]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000002"]
    meta = ckpt.load(final, model, opt, 0, 0)
    assert meta["step"] == 2 and torch.equal(model.weight, first + 1.0)   # the second save's weights


def test_keep_last_one_keeps_the_newest(megatron_pg, tmp_path):
    run = tmp_path / "run"
    r = _train(["--steps", "3", "--save-every", "1", "--keep-last", "1", "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000003"]
    r = _train(["--steps", "4", "--save-every", "1", "--keep-last", "1", "--run-dir", str(run)])
    assert r.exit_code == 0 and "resumed from step 3" in r.output, r.output
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000004"]
    assert _log_steps(run) == [1, 2, 3, 4]


def test_resume_from_an_older_checkpoint_lists_each_step_once(finished_run, tmp_path):
    ref_run, ref = finished_run
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    (run / "done").unlink()
    r = _train([*COMMON, "--run-dir", str(run), "--resume", str(run / "checkpoints" / "step-00000002")])
    assert r.exit_code == 0, r.output
    assert "resumed from step 2" in r.output
    assert _log_steps(run) == [1, 2, 3, 4] and _losses(run) == ref
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]


def test_resume_path_to_a_corrupt_checkpoint_is_one_line(finished_run, tmp_path):
    ref_run, _ = finished_run
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    target = run / "checkpoints" / "step-00000002"
    _truncate("__0_0.distcp", 50)(target, tmp_path)
    r = _train([*COMMON, "--run-dir", str(run), "--resume", str(target)])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and "__0_0.distcp" in r.stderr and "corrupted" in r.stderr, r.stderr


def test_stray_folder_and_half_written_done_marker_do_not_crash(finished_run, tmp_path):
    ref_run, ref = finished_run
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    shutil.rmtree(run / "checkpoints" / "step-00000004")
    shutil.copytree(run / "checkpoints" / "step-00000002", run / "checkpoints" / "step-00000004.bak")
    (run / "checkpoints" / "notes.txt").write_text("mine")
    (run / "done").write_bytes(b'{"step": 4, "st')
    r = _train([*COMMON, "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    assert f"note: ignoring {run / 'checkpoints' / 'step-00000004.bak'}" in r.output
    assert f"note: ignoring the unreadable done marker {run / 'done'}" in r.output
    assert "resumed from step 2" in r.output and _losses(run) == ref and _log_steps(run) == [1, 2, 3, 4]
    assert json.loads((run / "done").read_text())["steps"] == 4
    assert (run / "checkpoints" / "step-00000004.bak").is_dir()          # not ours: left alone
    r = _train([*COMMON, "--run-dir", str(run)])
    assert r.exit_code == 0 and "already finished" in r.output


def test_second_trainer_on_a_run_dir_refuses_and_a_killed_one_does_not_block(megatron_pg, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(k, None)
    first = subprocess.Popen([sys.executable, "-m", "soraplan", "train", "--tiny", "--steps", "100000", "--save-every", "0",
                              "--log-every", "1000", "--run-dir", str(run)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (run / "log.jsonl").exists() or not (run / "log.jsonl").read_text():
            assert first.poll() is None and time.time() < deadline, first.stderr.read() if first.poll() is not None else "slow"
            time.sleep(0.5)
        r = _train(["--steps", "2", "--run-dir", str(run)])
        assert r.exit_code == 2
        assert r.stderr.count("\n") == 1 and f"run-dir: {run} is in use by another trainer (pid {first.pid} on host" in r.stderr
        assert first.poll() is None                        # the first trainer is untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert (run / ".lock").exists()                        # a dead trainer's lock file is no lock
    r = _train(["--steps", "2", "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    assert _log_steps(run) == [1, 2]                       # no checkpoint: the killed run's steps are re-run once
