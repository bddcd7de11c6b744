"""Run-directory files without a model: atomic writes, the run-directory lock, checkpoint listing and
recovery, the log cut on resume, the done marker, and the refused run options."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_atomic_write_replaces_whole_files_and_leaves_no_temp(tmp_path, monkeypatch):
    from soraplan.models import atomic

    target = tmp_path / "status.json"
    atomic.write_json(target, {"state": "running"})
    assert json.loads(target.read_text()) == {"state": "running"}
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    atomic.write_json(target, {"state": "finished"})
    assert len(synced) == 2                              # the file, then its directory
    assert json.loads(target.read_text()) == {"state": "finished"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]

    def boom(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic.write_json(target, {"state": "failed"})
    assert json.loads(target.read_text()) == {"state": "finished"}   # the old content survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    from soraplan.models import atomic

    data = os.urandom(5 << 20)
    (tmp_path / "f").write_bytes(data)
    assert atomic.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b'{"pid": %d, "host": "holder-host"}' % os.getpid())
print("held", flush=True)
time.sleep(120)
"""


def test_run_lock_refuses_a_live_holder_and_ignores_a_dead_one(tmp_path):
    from soraplan.models.run_lock import LOCK_NAME, RunDirBusy, RunLock, read_token

    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy) as e:
            RunLock(tmp_path, "t1").acquire()
        msg = str(e.value)
        assert "\n" not in msg and f"pid {holder.pid} on host holder-host" in msg and str(tmp_path) in msg
    finally:
        holder.kill()
        holder.wait()
    # the dead holder's file stays, with its content: not a lock
    assert "holder-host" in (tmp_path / LOCK_NAME).read_text()
    lock = RunLock(tmp_path, "t2").acquire()
    assert lock.supported and read_token(tmp_path) == "t2"
    with pytest.raises(RunDirBusy):               # a second open file description in this process conflicts too
        RunLock(tmp_path, "t3").acquire()
    lock.release()
    with RunLock(tmp_path, "t4"):
        assert read_token(tmp_path) == "t4"


def _fake_ckpt(root: Path, name: str, complete: bool = True) -> Path:
    d = root / "checkpoints" / name
    d.mkdir(parents=True)
    (d / "meta.json").write_text("{}")
    if complete:
        (d / "complete").write_text("1\n")
    return d


def test_scan_ignores_unexpected_names_and_orders_newest_first(tmp_path):
    from soraplan.models import checkpoint as ckpt

    for name in ("step-00000002", "step-00000010", "step-00000004.bak", "step-4", "latest", "step-00000006.tmp-12"):
        _fake_ckpt(tmp_path, name)
    _fake_ckpt(tmp_path, "step-00000008", complete=False)
    (tmp_path / "checkpoints" / "README").write_text("x")
    s = ckpt.scan(tmp_path)
    assert [p.name for p in s.complete] == ["step-00000010", "step-00000002"]
    assert s.ignored == ["README", "latest", "step-00000004.bak", "step-4"]
    plan = ckpt.plan_resume(tmp_path, "auto")
    assert plan.paths(tmp_path) == [str(p) for p in s.complete] and plan.fallback
    assert plan.names == ["step-00000010", "step-00000002"]        # each rank resolves them in its own run dir
    assert len(plan.notes) == 4 and all(n.startswith("note: ignoring") and "\n" not in n for n in plan.notes)
    assert "step-00000004.bak" in plan.notes[2]


def test_plan_resume_path_and_never(tmp_path):
    from soraplan.models import checkpoint as ckpt

    d = _fake_ckpt(tmp_path, "step-00000002")
    assert ckpt.plan_resume(tmp_path, "never").names == []
    plan = ckpt.plan_resume(tmp_path, str(d))
    assert plan.paths(tmp_path / "elsewhere") == [str(d)] and not plan.fallback
    assert "does not exist" in ckpt.plan_resume(tmp_path, str(tmp_path / "nope")).error
    (d / "complete").unlink()
    assert "not a complete checkpoint" in ckpt.plan_resume(tmp_path, str(d)).error


def test_recover_puts_back_a_checkpoint_set_aside_by_an_interrupted_resave(tmp_path):
    from soraplan.models import checkpoint as ckpt

    aside = _fake_ckpt(tmp_path, "step-00000004.old-77")          # crash between the two renames
    _fake_ckpt(tmp_path, "step-00000002")
    _fake_ckpt(tmp_path, "step-00000002.old-78")                  # crash after the second rename
    _fake_ckpt(tmp_path, "step-00000006.tmp-79", complete=False)  # crash during a write
    notes = ckpt.recover(tmp_path)
    assert len(notes) == 1 and "step-00000004" in notes[0]
    assert not aside.exists()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]


def test_trim_log_keeps_each_step_once_up_to_the_resumed_step(tmp_path):
    from soraplan.models.trainer import trim_log

    log = tmp_path / "log.jsonl"
    lines = [{"step": s, "loss": float(s)} for s in (1, 2, 3, 4, 3, 4, 5)]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 6, "lo')   # torn last line
    notes = trim_log(log, 4)
    assert notes == [f"note: dropped 1 unreadable line(s) from {log}"]
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert trim_log(log, 0) == [] and log.read_text() == ""
    assert trim_log(tmp_path / "absent.jsonl", 3) == []


@pytest.mark.parametrize("content", [b"", b'{"step": 4, "ste', b"\xff\xfe", b"[1]", b'{"steps": "many"}'])
def test_half_written_done_marker_is_reported_not_fatal(tmp_path, content):
    from soraplan.models.trainer import _read_done

    (tmp_path / "done").write_bytes(content)
    info, why = _read_done(tmp_path / "done")
    assert info is None and why and "\n" not in why
    (tmp_path / "done").write_text('{"step": 4, "steps": 4}')
    assert _read_done(tmp_path / "done") == ({"step": 4, "steps": 4}, None)
    assert _read_done(tmp_path / "absent") == (None, None)


@pytest.mark.parametrize("flags, field", [
    (["--keep-last", "0"], "keep-last"), (["--keep-last", "-3"], "keep-last"),
    (["--log-every", "0"], "log-every"), (["--lr", "nan"], "lr"), (["--lr", "inf"], "lr"),
    (["--lr", "-inf"], "lr"), (["--lr", "0"], "lr"), (["--save-every", "-1"], "save-every"), (["--steps", "0"], "steps"),
])
def test_bad_run_options_are_one_line_exit_2_before_any_work(tmp_path, flags, field):
    r = subprocess.run([sys.executable, "-m", "soraplan", "train", "--tiny", "--run-dir", str(tmp_path / "run"), *flags],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), r.stderr
    assert not (tmp_path / "run").exists()                     # refused before the run directory is touched


@pytest.mark.parametrize("meta", [
    '{"files": {}}',                                                   # no step
    '{"step": 4, "files": []}',
    '{"step": 4, "files": {"__0_0.distcp": "abc"}}',
    '{"step": 4, "files": {"__0_0.distcp": {"sha256": "ab", "bytes": "12"}}}',
    '[4]',
])
def test_a_manifest_of_the_wrong_shape_is_corrupt_not_a_crash(tmp_path, meta):
    from soraplan.models import checkpoint as ckpt

    d = tmp_path / "step-00000004"
    d.mkdir()
    (d / "meta.json").write_text(meta)
    (d / "complete").write_text("4\n")                                # an unhashed marker: the shape is all we check
    with pytest.raises(ckpt.Corrupt, match="meta.json: not a checkpoint manifest"):
        ckpt.read_manifest(d)
    (d / "meta.json").write_text('{"step": 4, "files": {"__0_0.distcp": {"sha256": "ab", "bytes": 12}}}')
    assert ckpt.read_manifest(d)["step"] == 4
    (d / "complete").write_text('{"step": 4, "meta_sha256": "00"}')
    with pytest.raises(ckpt.Corrupt, match="meta.json: sha256 does not match the complete marker"):
        ckpt.read_manifest(d)
