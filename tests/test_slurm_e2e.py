"""End-to-end tests of `soraplan launch --cluster slurm` on a REAL local Slurm cluster (tests/slurm_cluster.py).

No mocks on this path: sbatch/srun/squeue/scontrol/scancel are Slurm 22.05's, jobs run `soraplan train` with
2 emulated nodes x 2 tasks (TP=2 x DP=2, gloo on CPU). The only stand-ins: `sacct` (no slurmdbd here; see
.ci/slurm/sacct) and, for the plumbing tests that need many signals quickly, tests/slurm_fake_train.py.
Skipped (with the reason) only where a cluster cannot be started: not root, or Slurm/munge not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from slurm_cluster import SlurmCluster, why_not_startable

pytestmark = pytest.mark.slurm

HERE = Path(__file__).resolve().parent
STEPS = 40          # long enough to signal mid-run (~0.1-0.3 s/step here), short enough for a 2-core box
SAVE_EVERY = 4
LAYOUT = ["--tiny", "--tp", "2", "--dp", "2", "--gpus-per-node", "2", "--cpus-per-task", "2"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    why = why_not_startable()
    if why:
        if os.environ.get("SORAPLAN_REQUIRE_SLURM"):   # .ci/run sets it: there, a skip would hide a broken install
            pytest.fail(f"Slurm is required here (SORAPLAN_REQUIRE_SLURM) but cannot start: {why}")
        pytest.skip(why)
    # a short private path (unix socket paths are limited to 107 bytes; pytest's basetemp may be long)
    root = Path(tempfile.mkdtemp(prefix="soraplan-slurm-"))
    cluster = SlurmCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if not os.environ.get("SORAPLAN_KEEP_SLURM_DIR"):
            shutil.rmtree(root, ignore_errors=True)


class Ctx:
    """CLI + cluster helpers for one test session (ledger, run root, fake python)."""

    def __init__(self, cluster: SlurmCluster, root: Path):
        self.c, self.root = cluster, root
        self.ledger = root / "ledger.sqlite"
        self.runs = root / "runs"
        self.fakepy = root / "fakepy"
        self.fakepy.write_text(
            "#!/bin/sh\n"
            f"if [ \"$1\" = -m ] && [ \"$2\" = soraplan ]; then exec {sys.executable} {HERE / 'slurm_fake_train.py'} \"$@\"; fi\n"
            f"exec {sys.executable} \"$@\"\n")
        self.fakepy.chmod(0o755)
        self.env = dict(cluster.env, PYTHONUNBUFFERED="1")

    def cli(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "soraplan", *args], capture_output=True, text=True,
                           env=env or self.env, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError(f"soraplan {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def launch(self, name: str, *args: str, python: str | None = None, check: bool = True, env=None):
        return self.cli("launch", "--cluster", "slurm", "--name", name, "--run-root", str(self.runs),
                        "--ledger", str(self.ledger), "--python", python or sys.executable, *args,
                        check=check, env=env)

    def job_ids(self, name: str) -> list[str]:
        rows = json.loads(self.cli("status", name, "--ledger", str(self.ledger), "--json").stdout)
        return rows[0]["job_ids"]

    def status(self, name: str) -> dict:
        return json.loads(self.cli("status", name, "--ledger", str(self.ledger), "--json").stdout)[0]

    def scontrol(self, job_id: str) -> dict[str, str]:
        out = self.c.run(["scontrol", "show", "job", "-o", job_id]).stdout
        return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)

    def wait_job_gone(self, job_id: str, timeout_s: float = 240) -> dict[str, str]:
        """Wait until the job reached a final state (scontrol keeps it for MinJobAge)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            info = self.scontrol(job_id)
            if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return info
            time.sleep(1)
        raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {self.scontrol(job_id)}")

    def wait_for(self, pred, timeout_s: float, what: str) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if pred():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")


def loss_log(run_dir: Path) -> dict[int, float]:
    """The run's loss trajectory: the last logged loss of each step (a resumed run may repeat steps)."""
    out: dict[int, float] = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[int(rec["step"])] = float(rec["loss"])
    return out


@pytest.fixture(scope="module")
def ctx(slurm, tmp_path_factory):
    return Ctx(slurm, tmp_path_factory.mktemp("slurm-runs"))


@pytest.fixture(scope="module")
def train_runs(ctx):
    """Two real 2x2 trainings at once: 'plain' runs through; 'requeued' gets the time-limit signal (USR2 to
    every task, as Slurm sends it `grace` s before the limit) mid-run, checkpoints, is requeued, resumes."""
    train = [*LAYOUT, "--steps", str(STEPS), "--save-every", str(SAVE_EVERY), "--train-arg=--log-every",
             "--train-arg=1"]
    ctx.launch("plain", *train)
    ctx.launch("requeued", *train)
    rq_dir = ctx.runs / "requeued"
    (job,) = ctx.job_ids("requeued")

    def mid_run() -> bool:
        p = rq_dir / "log.jsonl"
        return p.exists() and len(p.read_text().splitlines()) >= 3

    ctx.wait_for(mid_run, 240, "the 'requeued' run to log 3 steps")
    ctx.c.run(["scancel", "--signal=USR2", job])
    signalled_at = len((rq_dir / "log.jsonl").read_text().splitlines())
    return {"plain": ctx.runs / "plain", "requeued": rq_dir, "signalled_at": signalled_at}


def test_train_2x2_finishes_and_logs_read_back(ctx, train_runs):
    (job,) = ctx.job_ids("plain")
    # --follow returns when the job has left the queue, after printing everything
    out = ANSI.sub("", ctx.cli("logs", "plain", "--follow", "--ledger", str(ctx.ledger)).stdout)
    info = ctx.wait_job_gone(job, 30)
    assert info["JobState"] == "COMPLETED", info
    assert info["NumNodes"] == "2" and info["NumTasks"] == "4", info
    st = ctx.status("plain")
    assert st["state"] == "completed", st
    assert re.search(r"4 processes \(tp 2, .*dp 2\)", out), out[-2000:]
    assert "nodes n[1-2] master n1:" in out
    logged = {int(m[1]): float(m[2]) for m in re.finditer(rf"step (\d+)/{STEPS} loss ([0-9.]+)", out)}
    assert sorted(logged) == list(range(1, STEPS + 1))
    truth = loss_log(train_runs["plain"])
    assert all(abs(logged[s] - truth[s]) < 1e-5 for s in logged)   # the human lines print 5 decimals
    assert (train_runs["plain"] / "done").exists()


def test_requeue_mid_run_resumes_to_the_same_losses(ctx, train_runs):
    (job,) = ctx.job_ids("requeued")
    info = ctx.wait_job_gone(job)
    assert info["JobState"] == "COMPLETED", info
    assert info["Restarts"] == "1", info            # requeued once (same job id), not resubmitted
    assert ctx.job_ids("requeued") == [job]
    out = ANSI.sub("", ctx.cli("logs", "requeued", "--ledger", str(ctx.ledger)).stdout)
    assert "Caught signal SIGUSR2" in out and "soraplan: requeueing (restart 1/3)" in out
    m = re.search(r"resumed from step (\d+)", out)
    assert m, out[-3000:]
    resumed = int(m[1])
    assert 0 < resumed < STEPS
    ctx.wait_job_gone(ctx.job_ids("plain")[0])
    assert loss_log(train_runs["requeued"]) == loss_log(train_runs["plain"])   # exact, fixed seeds on CPU
    assert sorted(loss_log(train_runs["requeued"])) == list(range(1, STEPS + 1))
    assert ctx.status("requeued")["state"] == "completed"
    from soraplan.launch.ledger import Ledger

    with Ledger(ctx.ledger) as book:
        history = [state for _, state, _ in book.get("requeued").history]
    assert history[:2] == ["created", "submitted"] and history[-1] == "completed", history


def test_existing_name_is_not_submitted_twice_and_finished_run_never_restarts(ctx, train_runs):
    (job,) = ctx.job_ids("plain")
    ctx.wait_job_gone(job)
    again = ctx.launch("plain", *LAYOUT, "--steps", str(STEPS), check=False)
    assert again.returncode == 2 and "exists already" in again.stderr and "Traceback" not in again.stderr
    resume = ctx.launch("plain", *LAYOUT, "--steps", str(STEPS), "--resume", check=False)
    assert resume.returncode == 2 and "never restarted" in resume.stderr
    assert ctx.job_ids("plain") == [job]
    # --force starts anew: the old run directory is kept aside, a new job is the run's only job
    env = dict(ctx.env, FAKE_STEP_S="0.05")
    ctx.launch("plain", *LAYOUT, "--steps", "2", "--force", python=str(ctx.fakepy), env=env)
    (new_job,) = ctx.job_ids("plain")
    assert new_job != job and ctx.wait_job_gone(new_job, 120)["JobState"] == "COMPLETED"
    (aside,) = ctx.runs.glob("plain.replaced-*")
    assert (aside / "log.jsonl").exists() and (ctx.runs / "plain" / "argv.0.json").exists()


def test_injection_strings_never_execute(ctx, tmp_path):
    canary = tmp_path / f"pwned-{uuid.uuid4().hex}"
    evil = [f"a'; touch {canary} #", f"$(touch {canary})", f"`touch {canary}`", f"\"; touch {canary}; \"",
            f"x\ntouch {canary}"]
    # rejected: names, partition/account/qos and run roots that would land in #SBATCH lines or the shell
    for flag, value in [("--name", evil[0]), ("--name", "$(id)"), ("--partition", evil[1]), ("--qos", "a b"),
                        ("--account", evil[2]), ("--run-root", str(tmp_path / "$(id)"))]:
        args = ["launch", "--cluster", "slurm", "--ledger", str(ctx.ledger), *LAYOUT, "--steps", "2"]
        if flag != "--name":
            args += ["--name", "rejected"]
        if flag != "--run-root":
            args += ["--run-root", str(ctx.runs)]
        r = ctx.cli(*args, flag, value, check=False)
        assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr, (flag, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    # quoted: train args and environment values reach the job verbatim, through submitit and by hand
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps({"launch": {"env": {"EVIL": evil[1]}}}))
    args = [*LAYOUT, "--steps", "2", "--config", str(cfg)] + [f"--train-arg={e}" for e in evil]
    env = dict(ctx.env, FAKE_STEP_S="0.05")
    ctx.launch("inject", *args, python=str(ctx.fakepy), env=env)
    ctx.wait_job_gone(ctx.job_ids("inject")[0], 120)
    script = ctx.cli("launch", "--cluster", "slurm", "--name", "inject-hand", "--run-root", str(ctx.runs),
                     "--python", str(ctx.fakepy), *args, "--dry-run").stdout
    hand_dir = ctx.runs / "inject-hand"
    hand_dir.mkdir(parents=True)
    (hand_dir / "job.sh").write_text(script)
    hand_job = ctx.c.run(["sbatch", "--parsable", str(hand_dir / "job.sh")], env=env).stdout.strip()
    assert ctx.wait_job_gone(hand_job, 120)["JobState"] == "COMPLETED"
    for run in ("inject", "inject-hand"):
        for rank in range(4):
            rec = json.loads((ctx.runs / run / f"argv.{rank}.json").read_text())
            assert rec["argv"][-len(evil):] == evil, rec["argv"]
        assert (ctx.runs / run / "done").exists()
    assert not canary.exists()


def test_bounded_retries_and_cancel(ctx):
    """max_retries=1: the first time-limit signal requeues, the second ends the job (plumbing, fake train)."""
    env = dict(ctx.env, FAKE_STEP_S="0.5")
    ctx.launch("retries", "--tp", "2", "--dp", "2", "--gpus-per-node", "2", "--cpus-per-task", "2", "--steps",
               "400", "--max-retries", "1", python=str(ctx.fakepy), env=env)
    (job,) = ctx.job_ids("retries")
    run_dir = ctx.runs / "retries"
    def stepped(restart: str) -> bool:
        p = run_dir / "fake_steps.jsonl"
        return p.exists() and sum(f'"restart": "{restart}"' in line for line in p.read_text().splitlines()) >= 4

    for restart in ("0", "1"):
        ctx.wait_for(lambda: stepped(restart), 120, f"the fake run to step under restart {restart}")
        ctx.c.run(["scancel", "--signal=USR2", job])
    info = ctx.wait_job_gone(job, 120)
    assert info["Restarts"] == "1" and info["JobState"] == "FAILED", info
    out = ctx.cli("logs", "retries", "--ledger", str(ctx.ledger)).stdout
    assert "retries exhausted (1/1)" in out
    assert ctx.status("retries")["state"] == "failed"
    # --resume resubmits a run that did not finish (a new job id, recorded after the first)
    ctx.launch("retries", "--tp", "2", "--dp", "2", "--gpus-per-node", "2", "--cpus-per-task", "2", "--steps", "3",
               "--resume", python=str(ctx.fakepy), env=dict(ctx.env, FAKE_STEP_S="0.05"))
    first, second = ctx.job_ids("retries")
    assert first == job and ctx.wait_job_gone(second, 120)["JobState"] == "COMPLETED"
    assert ctx.status("retries")["state"] == "completed"
    # cancel: a pending/running run goes away and the ledger says so
    ctx.launch("to-cancel", "--tp", "2", "--dp", "2", "--gpus-per-node", "2", "--cpus-per-task", "2", "--steps",
               "400", python=str(ctx.fakepy), env=env)
    (job2,) = ctx.job_ids("to-cancel")
    ctx.cli("cancel", "to-cancel", "--ledger", str(ctx.ledger))
    assert ctx.wait_job_gone(job2, 60)["JobState"] == "CANCELLED"
    assert ctx.status("to-cancel")["state"] == "cancelled"


def test_hand_submitted_script_requeues_on_batch_usr2_then_stops(ctx):
    """The --dry-run script submitted with plain sbatch: B:USR2 -> forwarded to the tasks -> requeue (bounded)."""
    env = dict(ctx.env, FAKE_STEP_S="0.5")
    run_dir = ctx.runs / "hand"
    script = ctx.cli("launch", "--cluster", "slurm", "--name", "hand", "--run-root", str(ctx.runs), "--python",
                     str(ctx.fakepy), "--tp", "2", "--dp", "2", "--gpus-per-node", "2", "--cpus-per-task", "2",
                     "--steps", "400", "--max-retries", "1", "--debug", "--dry-run").stdout
    run_dir.mkdir(parents=True)
    (run_dir / "job.sh").write_text(script)
    job = ctx.c.run(["sbatch", "--parsable", str(run_dir / "job.sh")], env=env).stdout.strip()

    def stepped(restart: str) -> bool:
        p = run_dir / "fake_steps.jsonl"
        return p.exists() and sum(f'"restart": "{restart}"' in line for line in p.read_text().splitlines()) >= 4

    for restart in ("0", "1"):
        ctx.wait_for(lambda: stepped(restart), 120, f"the hand job to step under restart {restart}")
        ctx.c.run(["scancel", "--batch", "--signal=USR2", job])   # what --signal=B:USR2@grace delivers
    info = ctx.wait_job_gone(job, 120)
    assert info["Restarts"] == "1" and info["JobState"] == "FAILED", info
    out = (run_dir / f"hand_{job}.out").read_text()
    assert out.count("soraplan: USR2: checkpointing all tasks") == 2
    assert "soraplan: requeueing job" in out and "retries exhausted (1)" in out
    for restart in ("0", "1"):
        assert sorted(p.name for p in run_dir.glob(f"signal.*.{restart}")) == [f"signal.{r}.{restart}" for r in range(4)]
    # --debug bundle: one file per node + the job record
    bundle = run_dir / "debug" / job
    assert (bundle / "job.txt").exists() and len(list(bundle.glob("node-*.txt"))) == 2
    assert "SLURM_JOB_ID=" in next(bundle.glob("node-0-*.txt")).read_text()


def test_scontrol_requeue_restarts_the_job_with_sigterm(ctx):
    """`scontrol requeue` (admin requeue / preemption): SIGTERM reaches train, Slurm requeues it, same job id."""
    env = dict(ctx.env, FAKE_STEP_S="0.3")
    ctx.launch("admin-requeue", "--tp", "2", "--dp", "2", "--gpus-per-node", "2", "--cpus-per-task", "2", "--steps",
               "40", python=str(ctx.fakepy), env=env)
    (job,) = ctx.job_ids("admin-requeue")
    run_dir = ctx.runs / "admin-requeue"

    def every_rank_stepping() -> bool:   # the signal handlers are installed once a rank has written a step
        path = run_dir / "fake_steps.jsonl"
        ranks = set(re.findall(r'"rank": "(\d+)"', path.read_text())) if path.exists() else set()
        return ranks >= {"0", "1", "2", "3"}

    ctx.wait_for(every_rank_stepping, 120, "every rank of the fake run to step")
    ctx.c.run(["scontrol", "requeue", job])
    info = ctx.wait_job_gone(job, 180)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", info
    assert (run_dir / "signal.0.0").read_text() == "SIGTERM"
    assert (run_dir / "done").exists() and ctx.status("admin-requeue")["state"] == "completed"


# ------------------------------------------------------------------------------------------------ exactly once

def _jobs_named(ctx, name: str) -> list[str]:
    out = ctx.c.run(["squeue", "--noheader", "--states=all", "--name", name, "--format=%i"]).stdout
    return sorted(out.split())


def test_two_concurrent_resumes_submit_one_job(ctx):
    """Two `launch --resume` of one stopped run at the same moment: one job, the other launch gets one line."""
    env = dict(ctx.env, FAKE_STEP_S="0.5")
    base = ["--tp", "2", "--dp", "2", "--gpus-per-node", "2", "--cpus-per-task", "2", "--steps", "400"]
    ctx.launch("twice", *base, python=str(ctx.fakepy), env=env)
    (first,) = ctx.job_ids("twice")
    ctx.cli("cancel", "twice", "--ledger", str(ctx.ledger))
    ctx.wait_job_gone(first, 60)
    argv = [sys.executable, "-m", "soraplan", "launch", "--cluster", "slurm", "--name", "twice", "--run-root",
            str(ctx.runs), "--ledger", str(ctx.ledger), "--python", str(ctx.fakepy), *base, "--resume"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert sorted(rc for rc, _, _ in results) == [0, 2], results
    (err,) = [e for rc, _, e in results if rc == 2]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "in progress" in err or "still" in err, err
    jobs = ctx.job_ids("twice")
    assert len(jobs) == 2 and jobs[0] == first
    assert _jobs_named(ctx, "twice") == sorted(jobs)          # the cluster holds exactly these two jobs
    ctx.cli("cancel", "twice", "--ledger", str(ctx.ledger))


def test_kill_between_sbatch_and_record_then_resume_finds_the_job(ctx, tmp_path):
    """`kill -9` of `soraplan launch` right after sbatch accepted the job, before the ledger recorded it:
    `--resume` finds the job by the token in its comment and does not submit a second one."""
    real = shutil.which("sbatch", path=ctx.env["PATH"])
    wrap = tmp_path / "bin"
    wrap.mkdir()
    (wrap / "sbatch").write_text(f'#!/bin/sh\nout=$({real} "$@")\nrc=$?\nprintf "%s\\n" "$out"\n'
                                 'kill -9 "$PPID"\nexit $rc\n')
    (wrap / "sbatch").chmod(0o755)
    env = dict(ctx.env, FAKE_STEP_S="0.5")
    base = ["--tp", "2", "--dp", "2", "--gpus-per-node", "2", "--cpus-per-task", "2", "--steps", "400"]
    killed = ctx.launch("killed", *base, python=str(ctx.fakepy), check=False,
                        env=dict(env, PATH=f"{wrap}:{env['PATH']}"))
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    from soraplan.launch.ledger import Ledger

    with Ledger(ctx.ledger) as book:
        rec = book.get("killed")
    assert rec.state == "submitting" and rec.job_ids == [] and rec.submission is not None
    (job,) = _jobs_named(ctx, "killed")                       # sbatch did submit it
    token = rec.submission.token
    assert ctx.scontrol(job)["Comment"] == f"soraplan:{token}"
    again = ctx.launch("killed", *base, "--resume", python=str(ctx.fakepy), check=False, env=env)
    assert again.returncode == 2 and f"(jobs {job})" in again.stderr, again.stderr
    assert ctx.job_ids("killed") == [job] and _jobs_named(ctx, "killed") == [job]
    with Ledger(ctx.ledger) as book:
        rec = book.get("killed")
    assert rec.submission is None
    assert any(f"found on the cluster after an interrupted submission (token {token}): job {job}" == d
               for _, _, d in rec.history), rec.history
    ctx.cli("cancel", "killed", "--ledger", str(ctx.ledger))
    assert ctx.wait_job_gone(job, 60)["JobState"] == "CANCELLED"
