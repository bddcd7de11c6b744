"""`soraplan train`: multi-process runs, exact resume, checkpoint fallback, shards, clear errors."""

import json
import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.megatron


def _losses(run_dir) -> dict[int, float]:
    out = {}
    for line in (Path(run_dir) / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["step"]] = rec["loss"]     # a re-run step overwrites: the resumed curve is what counts
    return out


def _train(args, monkeypatch=None, env=None):
    from typer.testing import CliRunner

    from soraplan.cli import app

    if env and monkeypatch:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    r = CliRunner().invoke(app, ["train", "--tiny", "--log-every", "100", *args])
    if monkeypatch and env:
        for k in env:
            monkeypatch.delenv(k)
    return r


@pytest.mark.slow
def test_two_process_tp2_run_finishes_and_logs(tmp_path):
    from megatron_fixtures import torchrun

    run = tmp_path / "run"
    r = torchrun(2, ["-m", "soraplan", "train", "--tiny", "--tp", "2", "--steps", "3", "--save-every", "2",
                     "--run-dir", str(run), "--resume", "auto"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in recs] == [1, 2, 3]
    for key in ("loss", "step_time_s", "samples_per_s", "tokens_per_s", "tflops_per_gpu", "mfu"):
        assert all(key in x for x in recs)
    assert (run / "done").exists()
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000003"]


@pytest.mark.slow
def test_one_process_torchrun_finishes(tmp_path):
    """torchrun with one process: the group joins torchrun's store instead of waiting on a private port."""
    from megatron_fixtures import torchrun

    run = tmp_path / "run"
    r = torchrun(1, ["-m", "soraplan", "train", "--tiny", "--steps", "2", "--save-every", "0", "--run-dir", str(run)],
                 timeout_s=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.slow
def test_srun_variables_launch_a_tp2_run(tmp_path):
    """Slurm launch (no torchrun): SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID + MASTER_ADDR/MASTER_PORT."""
    import subprocess
    import sys

    from megatron_fixtures import free_port

    port = str(free_port())
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        env.update(SLURM_PROCID=str(rank), SLURM_NTASKS="2", SLURM_LOCALID=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        procs.append(subprocess.Popen([sys.executable, "-m", "soraplan", "train", "--tiny", "--tp", "2", "--steps", "2",
                                       "--run-dir", str(tmp_path / "run"), "--resume", "auto"],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:]
    assert "2 processes (tp 2" in outs[0]
    assert (tmp_path / "run" / "done").exists()


@pytest.mark.slow
def test_two_process_cp2_reproduces_the_one_process_curve(megatron_pg, tmp_path):
    from megatron_fixtures import torchrun

    r = torchrun(2, ["-m", "soraplan", "train", "--tiny", "--cp", "2", "--steps", "3", "--save-every", "0",
                     "--run-dir", str(tmp_path / "cp")])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    one = _train(["--steps", "3", "--save-every", "0", "--run-dir", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    a, b = _losses(tmp_path / "cp"), _losses(tmp_path / "one")
    assert a.keys() == b.keys() == {1, 2, 3}
    assert all(abs(a[k] - b[k]) <= 1e-5 * abs(b[k]) for k in a), (a, b)


@pytest.mark.slow
def test_two_process_pp2_runs_the_1f1b_schedule_and_resumes(tmp_path):
    from megatron_fixtures import torchrun

    run = tmp_path / "pp"
    args = ["-m", "soraplan", "train", "--tiny", "--pp", "2", "--save-every", "2", "--run-dir", str(run)]
    r = torchrun(2, [*args, "--steps", "2"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "pp 2" in r.stdout and "global batch 8" in r.stdout        # 4 x pp micro-batches by default
    r = torchrun(2, [*args, "--steps", "3"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "resumed from step 2" in r.stdout
    assert sorted(_losses(run)) == [1, 2, 3] and (run / "done").exists()


@pytest.mark.slow
def test_two_process_dp2_equals_one_process_accumulating_the_global_batch(megatron_pg, tmp_path):
    """DP gradient averaging: 2 ranks x 1 sample == 1 process x 2 micro-batches (same samples, same noise)."""
    from megatron_fixtures import torchrun

    run = tmp_path / "dp"
    r = torchrun(2, ["-m", "soraplan", "train", "--tiny", "--dp", "2", "--steps", "3", "--save-every", "0",
                     "--run-dir", str(run)])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (run / "done").exists()
    one = _train(["--global-batch", "2", "--steps", "3", "--save-every", "0", "--run-dir", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    a, b = _losses(run), _losses(tmp_path / "one")
    assert a.keys() == b.keys() == {1, 2, 3}
    assert all(abs(a[k] - b[k]) <= 1e-5 * abs(b[k]) for k in a), (a, b)


@pytest.mark.slow
def test_dp2_distributed_optimizer_resume_reproduces_the_curve(tmp_path):
    """ZeRO-sharded AdamW state goes through DCP: a dp=2 run stopped by SIGTERM and resumed == uninterrupted."""
    from megatron_fixtures import torchrun

    from soraplan.models.trainer import EXIT_PREEMPTED, SIGNAL_AT_STEP_ENV

    common = ["-m", "soraplan", "train", "--tiny", "--dp", "2", "--steps", "4", "--save-every", "2"]
    assert torchrun(2, [*common, "--run-dir", str(tmp_path / "a")]).returncode == 0
    r = torchrun(2, [*common, "--run-dir", str(tmp_path / "b")], env={SIGNAL_AT_STEP_ENV: "2"})
    assert r.returncode != 0 and json.loads((tmp_path / "b" / "status.json").read_text())["state"] == "preempted"
    assert f"exit {EXIT_PREEMPTED}" in r.stdout
    r = torchrun(2, [*common, "--run-dir", str(tmp_path / "b")])
    assert r.returncode == 0 and "resumed from step 3" in r.stdout and "sharded over DP" in r.stdout, r.stdout[-2000:]
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")


def test_resume_after_sigterm_reproduces_uninterrupted_curve(megatron_pg, tmp_path, monkeypatch):
    from soraplan.models.trainer import EXIT_PREEMPTED, SIGNAL_AT_STEP_ENV

    common = ["--steps", "6", "--save-every", "2", "--dropout", "0.1"]
    a = _train([*common, "--run-dir", str(tmp_path / "a")])
    assert a.exit_code == 0, a.output
    b1 = _train([*common, "--run-dir", str(tmp_path / "b")], monkeypatch, {SIGNAL_AT_STEP_ENV: "2"})
    assert b1.exit_code == EXIT_PREEMPTED, b1.output
    assert json.loads((tmp_path / "b" / "status.json").read_text())["state"] == "preempted"
    assert not (tmp_path / "b" / "done").exists()
    assert (tmp_path / "b" / "checkpoints" / "step-00000003" / "complete").exists()   # saved on the signal
    b2 = _train([*common, "--run-dir", str(tmp_path / "b")])
    assert b2.exit_code == 0, b2.output
    assert "resumed from step 3" in b2.output
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    # a finished run is never restarted
    b3 = _train([*common, "--run-dir", str(tmp_path / "b")])
    assert b3.exit_code == 0 and "already finished" in b3.output


def test_corrupted_latest_checkpoint_falls_back_to_previous(megatron_pg, tmp_path):
    run = tmp_path / "run"
    r = _train(["--steps", "4", "--save-every", "2", "--keep-last", "5", "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    ref = _losses(run)
    (run / "done").unlink()
    latest = run / "checkpoints" / "step-00000004"
    for f in latest.glob("*.distcp"):
        f.write_bytes(b"garbage")
    incomplete = run / "checkpoints" / "step-00000006"           # a dir without the marker is ignored
    shutil.copytree(run / "checkpoints" / "step-00000002", incomplete)
    (incomplete / "complete").unlink()
    r = _train(["--steps", "4", "--save-every", "2", "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    assert "step-00000004 is corrupted" in r.output and "falling back" in r.output
    assert "resumed from step 2" in r.output
    assert _losses(run) == ref


def test_resume_path_without_marker_is_a_clear_error(megatron_pg, tmp_path):
    bad = tmp_path / "ck"
    bad.mkdir()
    r = _train(["--steps", "2", "--run-dir", str(tmp_path / "run"), "--resume", str(bad)])
    assert r.exit_code == 2
    assert "not a complete checkpoint" in r.output
    assert _train(["--steps", "1", "--run-dir", str(tmp_path / "run")]).exit_code == 0
    r = _train(["--steps", "1", "--run-dir", str(tmp_path / "run"), "--resume", "never"])
    assert r.exit_code == 2 and "already holds checkpoints" in r.output


def test_shards_train_and_bad_shard_names_the_file(megatron_pg, tmp_path):
    from soraplan.models.make_shards import main as make_shards

    data = tmp_path / "shards"
    assert make_shards([str(data), "--tiny", "--samples", "6", "--per-shard", "4"]) == 0
    assert sorted(p.name for p in data.iterdir()) == ["shard-00000.safetensors", "shard-00001.safetensors"]
    r = _train(["--steps", "3", "--run-dir", str(tmp_path / "run"), "--data", str(data)])
    assert r.exit_code == 0, r.output
    (data / "shard-00001.safetensors").write_bytes(b"\x00\x01not a safetensors file")
    r = _train(["--steps", "3", "--run-dir", str(tmp_path / "run2"), "--data", str(data)])
    assert r.exit_code == 2
    lines = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "shard-00001.safetensors" in lines[0], r.output


def test_wrong_shard_shapes_and_layout_errors(megatron_pg, tmp_path):
    from soraplan.models.make_shards import main as make_shards

    data = tmp_path / "shards"
    assert make_shards([str(data), "--samples", "2", "--per-shard", "2", "--model", "DiT-S/8", "--tiny"]) == 0
    r = _train(["--steps", "1", "--run-dir", str(tmp_path / "run"), "--data", str(data)])   # 6B-tiny wants text
    assert r.exit_code == 2 and "missing text_mask, text_states" in r.output
    r = _train(["--steps", "1", "--run-dir", str(tmp_path / "r2"), "--tp", "2"])
    assert r.exit_code == 2 and "needs 2 processes" in r.output
    # interleaving needs the micro-batches per step in groups of pp: 3 micro-batches at pp=2 are refused
    r = _train(["--steps", "1", "--run-dir", str(tmp_path / "r3"), "--pp", "2", "--vpp", "2", "--global-batch", "3",
                "--micro-batch", "1"])
    assert r.exit_code == 2 and "parallel.vpp" in r.output
    r = _train(["--steps", "1", "--run-dir", str(tmp_path / "r4"), "--cp", "2", "--attention", "spatial-temporal"])
    assert r.exit_code == 2 and "parallel.cp" in r.output
