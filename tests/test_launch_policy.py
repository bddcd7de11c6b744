"""The launch policy without typer or a cluster: every ledger state x flag combination (launch/policy.py),
carrying a decision out against a fake backend and a throw-away ledger (launch/launcher.py), the options
builder (launch/options.build_options) and status/cancel through the ledger (launch/runs.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from soraplan.launch import launcher, runs
from soraplan.launch.ledger import Ledger
from soraplan.launch.options import LaunchOptions, build_options
from soraplan.launch.policy import ACTIVE_STATES, Decision, ExistingRun, check_flags, decide, needs_live_state
from soraplan.planner.config import build_spec
from soraplan.planner.errors import UserError

LEDGER = Path("/state/ledger.sqlite")
# Every state a run can have in the ledger (created by launch, the rest from the backends' status).
STATES = ("created", "submitted", "pending", "running", "requeued", "suspended", "completed", "failed",
          "timeout", "cancelled", "preempted", "deleted")
FLAGS = {"plain": (False, False), "resume": (True, False), "force": (False, True), "both": (True, True)}

EXCLUDE = Decision("refuse", "--resume and --force exclude each other")
EXISTS = Decision("refuse", "run 'r' exists already; use --resume to continue it or --force to start it anew")
COMPLETED = Decision("refuse", "run 'r' has completed; a finished run is never restarted (use --force)")


def active(state: str, jobs: str = "") -> Decision:
    return Decision("refuse", f"run 'r' is still {state} (jobs {jobs}); not submitting it twice (soraplan cancel it first)")


# --resume on a run without jobs: the recorded state alone decides.
RESUME_NO_JOBS = {
    "created": Decision("resume"), "submitted": active("submitted"), "pending": active("pending"),
    "running": active("running"), "requeued": active("requeued"), "suspended": active("suspended"),
    "completed": COMPLETED, "failed": Decision("resume"), "timeout": Decision("resume"),
    "cancelled": Decision("resume"), "preempted": Decision("resume"), "deleted": Decision("resume"),
}


def run(state: str, live: str | None = None, jobs: tuple[str, ...] = (), backend: str = "slurm") -> ExistingRun:
    return ExistingRun("r", backend, state, state if live is None else live, jobs)


# ------------------------------------------------------------------------------------------------
# decide: the table

@pytest.mark.parametrize("flags, want", [
    ("plain", Decision("create")),
    ("resume", Decision("refuse", f"--resume: no run named 'r' in the ledger {LEDGER}")),
    ("force", Decision("create")),
    ("both", EXCLUDE),
])
def test_free_name(flags, want):
    resume, force = FLAGS[flags]
    assert decide("r", "slurm", resume, force, None, LEDGER) == want


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("flags", list(FLAGS))
def test_taken_name_without_jobs(state, flags):
    resume, force = FLAGS[flags]
    want = {"plain": EXISTS, "resume": RESUME_NO_JOBS[state], "force": Decision("replace"), "both": EXCLUDE}[flags]
    # without jobs the backend is never asked, so a stale live state must not count
    assert decide("r", "slurm", resume, force, run(state, live="running"), LEDGER) == want


@pytest.mark.parametrize("recorded, live, want", [
    ("submitted", "failed", Decision("resume")),
    ("running", "preempted", Decision("resume")),
    ("failed", "running", active("running", "7, 9")),         # the cluster knows better than the ledger
    ("created", "pending", active("pending", "7, 9")),
    ("running", "completed", COMPLETED),
    ("completed", "failed", COMPLETED),                       # recorded as completed: never restarted
    ("timeout", "timeout", Decision("resume")),
    ("requeued", "requeued", active("requeued", "7, 9")),
    ("suspended", "cancelled", Decision("resume")),
])
def test_resume_reads_the_live_state_of_a_run_with_jobs(recorded, live, want):
    assert decide("r", "slurm", True, False, run(recorded, live, ("7", "9")), LEDGER) == want


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("old_backend, cancel", [("slurm", True), ("k8s", False)])
def test_force_cancels_old_jobs_only_on_the_same_backend(state, old_backend, cancel):
    existing = run(state, jobs=("7",), backend=old_backend)
    assert decide("r", "slurm", False, True, existing, LEDGER) == Decision("replace", cancel_old_jobs=cancel)


@pytest.mark.parametrize("state", STATES)
def test_taken_name_with_jobs_and_no_flag_is_refused(state):
    assert decide("r", "k8s", False, False, run(state, jobs=("Job/ns/r",), backend="k8s"), LEDGER) == EXISTS


def test_active_states_are_the_queued_or_running_ones():
    assert set(ACTIVE_STATES) == {s for s, d in RESUME_NO_JOBS.items() if d.reason.startswith("run 'r' is still")}


@pytest.mark.parametrize("resume, recorded, want", [
    (True, None, False), (True, run("failed"), False), (True, run("failed", jobs=("1",)), True),
    (False, run("failed", jobs=("1",)), False),
])
def test_live_state_is_asked_only_for_resume_with_jobs(resume, recorded, want):
    assert needs_live_state(resume, recorded) is want


def test_check_flags():
    check_flags(True, False)
    check_flags(False, True)
    with pytest.raises(UserError, match="exclude each other"):
        check_flags(True, True)


# ------------------------------------------------------------------------------------------------
# launch_run: carrying the decision out

class FakeBackend:
    """The backend seam (launch/backends.py) with a job counter instead of a cluster."""

    def __init__(self, live_state: str = "failed", with_files: bool = False):
        self.calls: list[tuple[str, Any]] = []
        self.live_state = live_state
        self.next_job = 100
        if with_files:
            self.write_dry_run = self._write_dry_run

    def render(self, spec, plan, opts):
        self.calls.append(("render", opts.name))
        return f"#!/bin/sh\n# {opts.name} on {spec.parallel.gpus} GPUs\n"

    def submit(self, spec, plan, opts, ledger, record):
        self.calls.append(("submit", None if record is None else record.name))
        if ledger is not None:
            self.next_job += 1
            ledger.add_job(record.name, str(self.next_job))

    def status(self, record):
        self.calls.append(("status", record.name))
        return {"state": self.live_state, "detail": "fake"}

    def cancel(self, record):
        self.calls.append(("cancel", tuple(record.job_ids)))

    def _write_dry_run(self, spec, plan, opts):
        path = Path(opts.output_dir) / "job.yaml"
        path.write_text("kind: Job\n")
        return [path]

    def called(self, what: str) -> list[Any]:
        return [arg for name, arg in self.calls if name == what]


@pytest.fixture(scope="module")
def spec():
    return build_spec(flags={"tp": 2, "gpus": 4, "name": "policy-test"})


def opts(tmp_path: Path, **kw: Any) -> LaunchOptions:
    return LaunchOptions(name="r", run_root=tmp_path / "runs", **kw)


def test_first_launch_records_and_submits_once(spec, tmp_path):
    be, ledger = FakeBackend(), tmp_path / "ledger.sqlite"
    result = launcher.launch_run(spec, opts(tmp_path), ledger, be)
    assert result.kind == "submitted" and result.record is not None
    assert (result.record.name, result.record.state, result.record.job_ids) == ("r", "submitted", ["101"])
    assert result.record.run_dir == (tmp_path / "runs" / "r").resolve()
    assert be.called("submit") == ["r"] and be.called("status") == []


def test_taken_name_is_refused_and_nothing_submitted(spec, tmp_path):
    be, ledger = FakeBackend(), tmp_path / "ledger.sqlite"
    launcher.launch_run(spec, opts(tmp_path), ledger, be)
    with pytest.raises(UserError, match="exists already"):
        launcher.launch_run(spec, opts(tmp_path), ledger, be)
    assert be.called("submit") == ["r"]


def test_resume_keeps_the_record_and_adds_a_job(spec, tmp_path):
    be, ledger = FakeBackend(live_state="failed"), tmp_path / "ledger.sqlite"
    first = launcher.launch_run(spec, opts(tmp_path), ledger, be).record
    again = launcher.launch_run(spec, opts(tmp_path, resume=True), ledger, be).record
    assert first is not None and again is not None
    assert again.created == first.created and again.job_ids == ["101", "102"]
    assert be.called("status") == ["r"] and be.called("cancel") == []


def test_resume_of_a_live_run_is_refused(spec, tmp_path):
    be, ledger = FakeBackend(live_state="running"), tmp_path / "ledger.sqlite"
    launcher.launch_run(spec, opts(tmp_path), ledger, be)
    with pytest.raises(UserError, match=r"still running \(jobs 101\)"):
        launcher.launch_run(spec, opts(tmp_path, resume=True), ledger, be)
    assert be.called("submit") == ["r"]


def test_force_cancels_the_old_jobs_and_records_anew(spec, tmp_path):
    be, ledger = FakeBackend(), tmp_path / "ledger.sqlite"
    launcher.launch_run(spec, opts(tmp_path), ledger, be)
    again = launcher.launch_run(spec, opts(tmp_path, force=True), ledger, be).record
    assert be.called("cancel") == [("101",)]
    assert again is not None and again.job_ids == ["102"]


def test_force_leaves_another_backends_jobs_alone(spec, tmp_path):
    be, ledger = FakeBackend(), tmp_path / "ledger.sqlite"
    with Ledger(ledger) as book:
        book.create("r", "k8s", tmp_path / "runs" / "r", {}, {}, {})
        book.add_job("r", "Job/default/r")
    again = launcher.launch_run(spec, opts(tmp_path, force=True), ledger, be).record
    assert be.called("cancel") == [] and again is not None and again.backend == "slurm"


def test_resume_and_force_are_refused_before_rendering(spec, tmp_path):
    be = FakeBackend()
    with pytest.raises(UserError, match="exclude each other"):
        launcher.launch_run(spec, opts(tmp_path, resume=True, force=True), tmp_path / "ledger.sqlite", be)
    assert be.calls == []


def test_dry_run_records_nothing(spec, tmp_path):
    be, ledger = FakeBackend(), tmp_path / "ledger.sqlite"
    result = launcher.launch_run(spec, opts(tmp_path, dry_run=True), ledger, be)
    assert result.kind == "dry-run" and result.text == "#!/bin/sh\n# r on 4 GPUs\n"
    assert be.called("submit") == [] and not ledger.exists()


def test_dry_run_into_a_folder_returns_the_files(spec, tmp_path):
    be = FakeBackend(with_files=True)
    result = launcher.launch_run(spec, opts(tmp_path, dry_run=True, output_dir=tmp_path), tmp_path / "l.sqlite", be)
    assert result.kind == "dry-run-files" and result.paths == (tmp_path / "job.yaml",)


def test_server_dry_run_submits_without_a_ledger(spec, tmp_path):
    be, ledger = FakeBackend(), tmp_path / "ledger.sqlite"
    result = launcher.launch_run(spec, opts(tmp_path, server_dry_run=True), ledger, be)
    assert result.kind == "server-dry-run" and be.called("submit") == [None] and not ledger.exists()


# ------------------------------------------------------------------------------------------------
# build_options

def test_default_run_name_from_the_spec_name():
    assert build_options("DiT-XL/2", None, {}).name == "DiT-XL-2"
    assert build_options("///", None, {}).name == "run"
    assert build_options("DiT-XL/2", {"name": "from-yaml"}, {}, "from-flag").name == "from-flag"
    assert build_options("DiT-XL/2", {"name": "from-yaml"}, {}).name == "from-yaml"


def test_flags_overlay_the_yaml_section_only_when_given():
    o = build_options("x", {"partition": "gpu", "steps": 5, "tiny": True, "train_args": ["--a"]},
                      {"partition": None, "steps": 7, "tiny": False, "train_args": (), "qos": "high"})
    assert (o.partition, o.steps, o.tiny, o.train_args, o.qos) == ("gpu", 7, True, ("--a",), "high")


@pytest.mark.parametrize("section, flags, msg", [
    ("not-a-mapping", {}, "launch: the YAML 'launch' section must be a mapping"),
    ([1, 2], {}, "launch: the YAML 'launch' section must be a mapping"),
    ({"steps": 0}, {}, "launch.steps"),
    ({}, {"cluster": "lsf"}, "launch.cluster"),
    ({"bogus": 1}, {}, "launch.bogus"),
])
def test_bad_launch_options_are_one_line(section, flags, msg):
    with pytest.raises(UserError) as e:
        build_options("x", section, flags)
    assert str(e.value).startswith(msg) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------
# status / cancel through the ledger

def test_status_records_the_live_state_and_cancel_records_cancelled(tmp_path, monkeypatch):
    be, ledger = FakeBackend(live_state="running"), tmp_path / "ledger.sqlite"
    monkeypatch.setattr(runs, "get_backend", lambda name: be)
    with Ledger(ledger) as book:
        book.create("r", "slurm", tmp_path / "r", {}, {}, {})
        book.add_job("r", "5")
    (row,) = runs.run_statuses(None, ledger)
    assert row.to_json() == {"name": "r", "backend": "slurm", "state": "running", "detail": "fake",
                             "job_ids": ["5"], "run_dir": str(tmp_path / "r")}
    runs.cancel_run("r", ledger)
    with Ledger(ledger) as book:
        rec = book.get("r")
    assert rec.state == "cancelled" and [h[1] for h in rec.history] == ["created", "submitted", "running", "cancelled"]
    assert be.called("cancel") == [("5",)]


def test_policy_modules_import_without_typer():
    code = ("import sys, soraplan.launch.launcher, soraplan.launch.runs, soraplan.launch.policy\n"
            "print('typer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
