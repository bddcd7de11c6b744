"""Every command's human output fits the terminal it is printed in: at 60, 80 and 120 columns no line is
wider than the terminal and nothing is elided ("…"); the numbers of the seed estimate and plan all show.

Commands run through the CLI with $COLUMNS (what rich reads when stdout is not a terminal); the views whose
inputs need a cluster or torch (validate's table, status, profile) render the same typed rows at each width.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from soraplan.cli import app

WIDTHS = (60, 80, 120)
SEED = ["--frames", "960", "--res", "256"]
runner = CliRunner()


def assert_fits(text: str, width: int) -> None:
    assert text.strip(), "no output"
    for line in text.splitlines():
        assert "…" not in line, f"elided at {width} columns: {line!r}"
        assert len(line) <= width, f"{len(line)} > {width} columns: {line!r}"


def cli(args: list[str], width: int) -> str:
    r = runner.invoke(app, args, env={"COLUMNS": str(width)})
    assert r.exit_code == 0, r.output
    return r.stdout


def render(fn, *args, width: int) -> str:
    buf = io.StringIO()
    fn(*args, Console(file=buf, width=width))
    return buf.getvalue()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("args", [
    ["estimate", *SEED, "--tp", "8"],
    ["estimate", "--model", "DiT-XL/2", "--frames", "16", "--res", "512", "--attention", "window:4,16,16"],
    ["estimate", "caption", "--vlm", "cogvlm", "--summarize-llm", "yi-34b"],
    ["estimate", "dataset", "--dataset", "youku-mplug", "--frames", "96", "--res", "256", "--gpus", "64"],
    ["estimate", "dataset", "--dataset", "laion-5b", "--model", "DiT-XL/2"],
    ["estimate", "presets"],
    ["doctor"],
    ["--version"],
], ids=lambda a: " ".join(a) if isinstance(a, list) else str(a))
def test_cli_output_fits(args, width):
    assert_fits(cli(args, width), width)


def test_seed_estimate_shows_every_number_at_80():
    from soraplan.planner.estimate import estimate
    from soraplan.planner.config import build_spec

    r = estimate(build_spec(flags={"frames": 960, "res": 256, "tp": 8}))
    out = cli(["estimate", *SEED, "--tp", "8"], 80)
    m = r.memory_gib
    for v in (m.weights, m.grads, m.optimizer, m.activations, m.buffers, m.total, m.capacity):
        assert f"{v:.1f}" in out
    for row in r.attention_comparison:
        assert str(row["attention"]) in out and f"{row['days']:.1f}" in out
    for row in r.gpu_counts:
        assert f"{row['gpu_hours']:,.0f}" in out and f"{row['epochs_in_90_days']:.1f}" in out
    assert f"{r.params.total:,}" in out and f"{r.step.time_s:.3f}" in out


@pytest.fixture(scope="module")
def seed_plan():
    from soraplan.planner.config import build_spec
    from soraplan.planner.plan import plan

    return plan(build_spec(flags={"frames": 960, "res": 256, "gpu": "a100-80g"}), (200, 300, 400))


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_seed_plan_fits_and_shows_every_number(seed_plan, width):
    from soraplan.cli.plan_view import render as render_plan
    from soraplan.planner.rank import format_layout

    out = render(render_plan, seed_plan, width=width)
    assert_fits(out, width)
    flat = " ".join(out.split())
    for c in seed_plan.gpu_counts:
        for e in c.ranked:
            for v in (f"{e.memory_gib.total:.1f}", f"{e.step.time_s:.2f}", f"{e.step.mfu:.1%}", f"{e.train.days:.1f}",
                      f"{e.train.gpu_hours:,.0f}", f"{e.train.cost_usd:,.0f}"):
                assert v in out, v
            for bit in format_layout(e).split():
                assert bit in out, bit
        m = c.ranked[0].memory_gib
        assert (f"weights {m.weights:.1f} + grads {m.grads:.1f} + optimizer {m.optimizer:.1f} + activations "
                f"{m.activations:.1f} + buffers {m.buffers:.1f} = {m.total:.1f} GiB") in flat
    for x in seed_plan.sensitivity:
        assert x.assumption.split()[0] in out


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_curriculum_plan_fits(width):
    out = cli(["plan", *SEED, "--gpus", "200,300,400", "--curriculum", "default", "--no-sensitivity"], width)
    assert_fits(out, width)
    assert "Curriculum" in out


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_report_console_output_fits(tmp_path, width):
    r = runner.invoke(app, ["report", *SEED, "--gpus", "64", "-o", str(tmp_path / "r.html")], env={"COLUMNS": str(width)})
    assert r.exit_code == 0, r.output
    assert_fits(r.stderr, width)
    assert "wrote" in r.stderr and "GPU-hours" in r.stderr


@pytest.mark.parametrize("width", WIDTHS)
def test_validate_table_fits(width):
    from soraplan.cli.validate_view import render_table
    from soraplan.validation.measure_compare import Row

    rows = [Row("soraplan-6B meta (tp=1, 40 layers, 30,720 tokens)", "parameters", 6_131_825_792, 6_131_825_792, 0, "params"),
            Row("soraplan-6B meta (tp=1, 40 layers, 30,720 tokens)", "forward FLOPs", 7.97e14, 7.96e14, 0.01, "FLOP"),
            Row("tiny-window cpu", "saved activations per layer", 123_456_789, 120_000_000, 0.02, "B"),
            Row("TP=2 gloo (2 processes)", "step time", 1.234, None, None, "s")]
    out = render(render_table, rows, [{"config": "TP cases", "error": "RuntimeError: gloo timed out after 30 s"}],
                 "soraplan validate: planner vs the Megatron-core DiT", width=width)
    assert_fits(out, width)
    for word in ("6,131,825,792", "797.0000", "796.0000", "117.74", "+0.1256", "FAIL", "timed", "comparisons"):
        assert word in out, word


@pytest.mark.parametrize("width", WIDTHS)
def test_status_fits_and_explains_pending(width):
    from soraplan.cli.runs_view import render_status
    from soraplan.launch.runs import RunStatus, explain_reason

    rows = [RunStatus("seed-6b-256px-40s", "slurm", "pending", "job 1234567 PENDING (PartitionConfig)", ("1234567",),
                      "/scratch/team/soraplan/runs/seed-6b-256px-40s", explain_reason("PartitionConfig")),
            RunStatus("k8s-run", "k8s", "running", "JobSet running, 1 restart",
                      ("ConfigMap/default/k8s-run-spec", "JobSet/default/k8s-run"), "/home/u/runs/k8s-run")]
    out = render(render_status, rows, width=width)
    assert_fits(out, width)
    flat = " ".join(out.split())
    assert "the request exceeds what the partition allows" in flat and "1234567" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_profile_fits(width):
    from soraplan.cli.profile_view import render as render_profile

    r = {"preset": "animatediff", "title": "AnimateDiff (SD-1.5 UNet + motion modules)", "module": "diffusers.UNetMotionModel",
         "inputs": "sample=1,4,16,32,32 timestep=1:int64 encoder_hidden_states=1,77,768", "dtype": "float32",
         "params": 1_302_000_000, "flops": {"forward": 5.1e12, "train": 1.53e13}, "saved_activation_gib": 12.34,
         "saved_tensors": 4321, "frames": 16, "res": 256,
         "compare": [{"model": "DiT-XL/2", "params": 675_000_000, "tokens": 4096, "forward_flops": 1.9e12,
                      "train_flops": 5.7e12, "unet_over_dit_forward": 2.68}]}
    out = render(render_profile, r, width=width)
    assert_fits(out, width)
    assert "1,302,000,000" in out and "4,321" in out and "2.68" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_launch_line_fits(monkeypatch, width):
    import soraplan.launch.launcher as launcher

    record = SimpleNamespace(name="seed-6b-256px-40s-with-a-long-name", state="submitted", backend="slurm",
                             job_ids=["1234567"], run_dir="/scratch/team/soraplan/runs/seed-6b-256px-40s-with-a-long-name")
    monkeypatch.setattr(launcher, "launch_run", lambda *a, **k: launcher.LaunchResult("submitted", record=record))
    out = cli(["launch", "--cluster", "slurm", "--tp", "2", "--dp", "2"], width)
    assert_fits(out, width)
    assert "1234567" in out and record.run_dir in "".join(out.split())
