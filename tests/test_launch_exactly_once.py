"""Exactly-once submission without a cluster: the run lock, the two-phase record (Ledger.begin_submit /
record_jobs / close_submission) and every branch of the launcher's reconciliation, against a fake backend
whose "cluster" is a JSON file (so separate processes share it). The real-Slurm twins are in
tests/test_slurm_exactly_once.py.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from soraplan.launch import launcher, slurm
from soraplan.launch.ledger import Ledger
from soraplan.launch.options import LaunchOptions
from soraplan.launch.policy import Decision, ExistingRun, decide
from soraplan.planner.config import build_spec
from soraplan.planner.errors import UserError


class Killed(BaseException):
    """Stands in for `kill -9` between the cluster call and the ledger's record (not an Exception: nothing
    in the launcher may catch it and tidy up)."""


class FileCluster:
    """The backend seam over a JSON file of jobs {id: {"token", "state"}}; `crash` kills after the submit."""

    def __init__(self, path: Path, crash: bool = False, submit_s: float = 0.0, live_state: str = "pending",
                 lookup_error: str | None = None):
        self.path, self.crash, self.submit_s, self.live_state = path, crash, submit_s, live_state
        self.lookup_error = lookup_error
        self.calls: list[str] = []

    def jobs(self) -> dict[str, dict[str, str]]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def render(self, spec, plan, opts):
        return "#!/bin/sh\n"

    def submit(self, spec, plan, opts, ledger, record):
        self.calls.append("submit")
        token = ledger.begin_submit(record.name)
        time.sleep(self.submit_s)
        jobs = self.jobs()
        job_id = str(100 + len(jobs))
        jobs[job_id] = {"token": token, "state": self.live_state}
        self.path.write_text(json.dumps(jobs))
        if self.crash:
            raise Killed()
        ledger.record_jobs(record.name, [job_id])

    def lookup(self, record):
        self.calls.append("lookup")
        if self.lookup_error:
            raise UserError(self.lookup_error)
        return [j for j, v in self.jobs().items() if v["token"] == record.submission.token]

    def status(self, record):
        self.calls.append("status")
        return {"state": self.jobs()[record.job_ids[-1]]["state"], "detail": "file"}

    def cancel(self, record):
        self.calls.append("cancel")
        jobs = self.jobs()
        for j in record.job_ids:
            if j in jobs:
                jobs[j]["state"] = "cancelled"
        self.path.write_text(json.dumps(jobs))


@pytest.fixture(scope="module")
def spec():
    return build_spec(flags={"tp": 2, "gpus": 4, "name": "once"})


def opts(tmp_path: Path, **kw: Any) -> LaunchOptions:
    return LaunchOptions(name="r", run_root=tmp_path / "runs", **kw)


def record(ledger: Path):
    with Ledger(ledger) as book:
        return book.get("r")


def crashed_run(spec, tmp_path: Path, live_state: str = "pending") -> tuple[FileCluster, Path]:
    """A run whose first launch was killed after the cluster took the job, before the ledger recorded it."""
    be, ledger = FileCluster(tmp_path / "cluster.json", crash=True, live_state=live_state), tmp_path / "l.sqlite"
    with pytest.raises(Killed):
        launcher.launch_run(spec, opts(tmp_path), ledger, be)
    be.crash = False
    rec = record(ledger)
    assert rec.state == "submitting" and rec.job_ids == [] and rec.submission is not None
    assert list(be.jobs()) == ["100"] and be.jobs()["100"]["token"] == rec.submission.token
    return be, ledger


# ------------------------------------------------------------------------------------------------ reconciliation

def test_resume_after_a_kill_finds_the_job_instead_of_submitting_again(spec, tmp_path):
    be, ledger = crashed_run(spec, tmp_path)
    with pytest.raises(UserError, match=r"still pending \(jobs 100\)"):
        launcher.launch_run(spec, opts(tmp_path, resume=True), ledger, be)
    assert list(be.jobs()) == ["100"] and be.calls.count("submit") == 1
    rec = record(ledger)
    assert rec.job_ids == ["100"] and rec.state == "submitted" and rec.submission is None
    assert "found on the cluster after an interrupted submission" in rec.history[-1][2]


def test_resume_after_a_kill_of_a_job_that_since_failed_resubmits_once(spec, tmp_path):
    be, ledger = crashed_run(spec, tmp_path, live_state="failed")
    again = launcher.launch_run(spec, opts(tmp_path, resume=True), ledger, be).record
    assert again is not None and again.job_ids == ["100", "101"] and be.calls.count("submit") == 2


def test_plain_launch_after_a_kill_records_the_job_and_refuses(spec, tmp_path):
    be, ledger = crashed_run(spec, tmp_path)
    with pytest.raises(UserError, match="exists already"):
        launcher.launch_run(spec, opts(tmp_path), ledger, be)
    assert record(ledger).job_ids == ["100"] and be.calls.count("submit") == 1


def test_force_after_a_kill_cancels_the_found_job_then_replaces(spec, tmp_path):
    be, ledger = crashed_run(spec, tmp_path)
    again = launcher.launch_run(spec, opts(tmp_path, force=True), ledger, be).record
    assert be.jobs()["100"]["state"] == "cancelled" and again is not None and again.job_ids == ["101"]


def test_token_not_found_means_submitting_again_is_safe(spec, tmp_path):
    be, ledger = crashed_run(spec, tmp_path)
    be.path.write_text("{}")             # the cluster never kept the job (sbatch died before the controller had it)
    again = launcher.launch_run(spec, opts(tmp_path, resume=True), ledger, be).record
    assert again is not None and again.job_ids == ["100"] and again.state == "submitted"
    states = [(s, d) for _, s, d in again.history]
    assert states[0] == ("created", "") and "not found on the cluster" in states[1][1] and states[1][0] == "created"


def test_lookup_that_cannot_reach_the_cluster_refuses_and_keeps_the_submission_open(spec, tmp_path):
    be, ledger = crashed_run(spec, tmp_path)
    be.lookup_error = "slurm: 'squeue' not found on PATH"
    for flags in ({}, {"resume": True}, {"force": True}):
        with pytest.raises(UserError, match="squeue"):
            launcher.launch_run(spec, opts(tmp_path, **flags), ledger, be)
    assert be.calls.count("submit") == 1 and "cancel" not in be.calls
    assert record(ledger).submission is not None


def test_a_backend_without_lookup_refuses(spec, tmp_path):
    be, ledger = crashed_run(spec, tmp_path)

    class NoLookup(FileCluster):
        lookup = None  # type: ignore[assignment]

    with pytest.raises(UserError, match="cannot look it up"):
        launcher.launch_run(spec, opts(tmp_path, resume=True), ledger, NoLookup(be.path))
    assert list(be.jobs()) == ["100"]


def test_failed_sbatch_keeps_its_state_after_reconciliation(spec, tmp_path):
    """sbatch answered with an error: state 'failed', submission open; the next launch finds nothing, keeps
    'failed' and resumes."""
    be, ledger = FileCluster(tmp_path / "cluster.json"), tmp_path / "l.sqlite"
    with Ledger(ledger) as book:
        book.create("r", "slurm", tmp_path / "runs" / "r", {}, {}, {})
        book.begin_submit("r")
        book.set_state("r", "failed", "sbatch: invalid partition")
        assert book.get("r").submission is not None
        launcher.reconcile(book, be, "r")
        rec = book.get("r")
    assert rec.state == "failed" and rec.submission is None and "not found on the cluster" in rec.history[-1][2]
    assert launcher.launch_run(spec, opts(tmp_path, resume=True), ledger, be).record.job_ids == ["100"]


def test_no_open_submission_asks_nothing(spec, tmp_path):
    be, ledger = FileCluster(tmp_path / "cluster.json", live_state="failed"), tmp_path / "l.sqlite"
    launcher.launch_run(spec, opts(tmp_path), ledger, be)
    launcher.launch_run(spec, opts(tmp_path, resume=True), ledger, be)
    assert "lookup" not in be.calls


def test_decide_refuses_a_run_still_submitting():
    run = ExistingRun("r", "slurm", "submitting", "submitting", ())
    for resume, force in ((False, False), (True, False), (False, True)):
        d = decide("r", "slurm", resume, force, run, "/l")
        assert d == Decision("refuse", "run 'r' is being submitted (its submission is not yet settled); "
                                       "not submitting it twice")


# ------------------------------------------------------------------------------------------------ the ledger

def test_two_phase_record(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as book:
        book.create("r", "k8s", tmp_path, {}, {}, {})
        token = book.begin_submit("r", ["ConfigMap/ns/a-spec", "JobSet/ns/a"])
        assert len(token) == 32 and book.get("r").state == "submitting"
        assert book.get("r").submission.planned == ("ConfigMap/ns/a-spec", "JobSet/ns/a")
        with pytest.raises(UserError, match="still open"):
            book.begin_submit("r")
        assert book.runs_holding("JobSet/ns/a") == ["r"]
        book.record_jobs("r", ["ConfigMap/ns/a-spec", "JobSet/ns/a"])
        rec = book.get("r")
        assert (rec.state, rec.job_ids, rec.submission) == ("submitted", ["ConfigMap/ns/a-spec", "JobSet/ns/a"], None)
        assert [s for _, s, _ in rec.history] == ["created", "submitted"]     # "submitting" is no history event
        assert book.runs_holding("JobSet/ns/a") == ["r"] and book.runs_holding("JobSet/ns/b") == []
        second = book.begin_submit("r")
        assert second != token
        book.close_submission("r", "not found")
        assert book.get("r").state == "submitted" and book.get("r").submission is None
        with pytest.raises(UserError, match="no run named"):
            book.begin_submit("nobody")


def test_run_lock_is_exclusive_per_run_and_released(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as book, Ledger(tmp_path / "l.sqlite") as other:
        with book.run_lock("r") as path:
            assert path.parent == tmp_path / "l.sqlite.locks"
            with pytest.raises(UserError) as e:
                with other.run_lock("r"):
                    pass
            assert "another soraplan launch of this run is in progress" in str(e.value) and "\n" not in str(e.value)
            with other.run_lock("s"):      # another run is not blocked
                pass
        with other.run_lock("r"):          # released on exit
            pass


# ------------------------------------------------------------------------------------------------ concurrency

def _launch_in_child(args: tuple[str, str, str, dict[str, Any], float, float]) -> str:
    cluster, ledger, root, flags, submit_s, go = args
    spec = build_spec(flags={"tp": 2, "gpus": 4, "name": "once"})
    be = FileCluster(Path(cluster), submit_s=submit_s)
    time.sleep(max(0.0, go - time.time()))     # both children start their launch at the same moment
    try:
        launcher.launch_run(spec, LaunchOptions(name="r", run_root=Path(root), **flags), ledger, be)
        return "ok"
    except UserError as e:
        return f"error: {e}"


@pytest.mark.parametrize("flags", [{"resume": True}, {"force": True}])
def test_two_concurrent_launches_give_one_job(spec, tmp_path, flags):
    be, ledger = FileCluster(tmp_path / "cluster.json", live_state="failed"), tmp_path / "l.sqlite"
    launcher.launch_run(spec, opts(tmp_path), ledger, be)          # job 100, failed: both may resume/force it
    args = (str(be.path), str(ledger), str(tmp_path / "runs"), flags, 3.0, time.time() + 15.0)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_launch_in_child, [args, args])
    assert sorted(r == "ok" for r in results) == [False, True], results
    (err,) = [r for r in results if r != "ok"]
    assert "another soraplan launch of this run is in progress" in err and "\n" not in err
    assert list(be.jobs()) == ["100", "101"]
    assert record(ledger).job_ids[-1] == "101"


# ------------------------------------------------------------------------------------------------ slurm lookup

def test_slurm_lookup_matches_the_exact_comment(monkeypatch, tmp_path):
    import subprocess

    from soraplan.launch.ledger import RunRecord, Submission

    calls = []

    def fake_run(argv, check=False):
        calls.append(argv[0])
        out = {"squeue": "7|soraplan:abc\n8|soraplan:abcd\n9|other\n", "sacct": "11|soraplan:zzz\n"}[argv[0]]
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(slurm, "_run", fake_run)
    rec = RunRecord("r", "slurm", tmp_path, {}, {}, {}, 0.0, "submitting", submission=Submission("abc", time.time()))
    assert slurm.lookup(rec) == ["7"] and calls == ["squeue"]
    rec.submission = Submission("zzz", time.time())
    assert slurm.lookup(rec) == ["11"] and calls == ["squeue", "squeue", "sacct"]
    rec.submission = Submission("nothing", time.time())
    assert slurm.lookup(rec) == []
    monkeypatch.setattr(slurm, "_run", lambda argv, check=False: subprocess.CompletedProcess(argv, 1, "", "down"))
    with pytest.raises(UserError, match="cannot tell whether the interrupted submission"):
        slurm.lookup(rec)
