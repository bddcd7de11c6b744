"""`soraplan estimate` through typer's CliRunner and in a real subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soraplan.cli import app

GOLDEN = Path(__file__).parent / "golden" / "estimate_seed.json"
SEED = ["estimate", "--frames", "960", "--res", "256", "--tp", "8"]
REQUIRED = {
    "sequence_length": None, "params": {"total", "per_gpu"},
    "flops": {"forward_per_sample", "train_per_sample", "hardware_per_sample"},
    "memory_gib": {"weights", "grads", "optimizer", "activations", "total", "capacity", "fits"},
    "step": {"time_s", "mfu", "samples_per_s"}, "train": {"samples", "gpu_hours", "days", "cost_usd"}, "spec": None,
}

runner = CliRunner()


def test_seed_json_contract():
    r = runner.invoke(app, SEED + ["--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    for key, sub in REQUIRED.items():
        assert key in out
        if sub:
            assert sub <= set(out[key]), (key, sub - set(out[key]))
    assert out["sequence_length"] == 30_720
    assert out["memory_gib"]["fits"] is True
    assert out["spec"]["parallel"]["tp"] == 8


def test_seed_golden_json():
    """The whole seed answer; regenerate with SORAPLAN_UPDATE_GOLDEN=1 after an intended planner change."""
    r = runner.invoke(app, SEED + ["--json"])
    out = json.loads(r.stdout)
    if os.environ.get("SORAPLAN_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert json.dumps(out, sort_keys=True) == json.dumps(golden, sort_keys=True)


def test_human_tables_show_the_seed_comparison():
    r = runner.invoke(app, SEED, env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    for text in ("30,720 tokens", "Memory per GPU", "Days by GPU count", "Seed check", "window:8,16,16", "spatial-temporal"):
        assert text in r.stdout, text


@pytest.mark.parametrize("args, needle", [
    (["--tp", "5"], "parallel.tp"),
    (["--gpu", "tpu-v9"], "hardware.gpu: unknown GPU 'tpu-v9'; known: a100-40g"),
    (["--attention", "window:7,16,16"], "model.attention"),
    (["--config", "/nonexistent.yaml"], "--config: no such file"),
])
def test_errors_are_one_line_exit_2(args, needle):
    r = runner.invoke(app, ["estimate"] + args)
    assert r.exit_code == 2
    assert needle in r.stderr
    assert r.stderr.count("\n") == 1
    assert "Traceback" not in r.output


def test_subprocess_and_no_heavy_imports():
    code = (
        "import sys\n"
        "from soraplan.cli import app\n"
        "try:\n"
        "    app(['estimate', '--frames', '960', '--res', '256', '--tp', '8', '--json'])\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'megatron', 'plotly', 'kubernetes', 'submitit', 'fvcore') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sequence_length"] == 30_720
    assert "HEAVY []" in r.stderr


def test_module_entry_point_error_exit_code():
    r = subprocess.run([sys.executable, "-m", "soraplan", "estimate", "--pp", "3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: parallel.pp")
