"""templates/run.yaml, the example run description, works with every command that reads --config."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from soraplan.cli import app
from soraplan.planner.config import build_spec_and_extras

EXAMPLE = Path(__file__).resolve().parents[1] / "templates" / "run.yaml"
runner = CliRunner()


def test_example_builds_one_spec():
    spec, extras = build_spec_and_extras(config=EXAMPLE)
    assert spec.name == "sora-6b-v1" and spec.seq_len == 30_720 and spec.parallel.world == 256
    assert spec.training.samples == 10_000_000            # from the youku-mplug preset
    assert set(extras) == {"preset", "launch", "report"}


@pytest.mark.parametrize("args, expect", [
    (["estimate"], "30,720 tokens"),
    (["launch", "--cluster", "slurm", "--dry-run"], "#SBATCH --nodes=32"),
    (["launch", "--cluster", "k8s", "--dry-run"], "kind: JobSet"),
])
def test_commands_accept_the_example(args, expect, tmp_path):
    r = runner.invoke(app, args + ["--config", str(EXAMPLE)], env={"COLUMNS": "160", "SORAPLAN_STATE_DIR": str(tmp_path)})
    assert r.exit_code == 0, r.output
    assert expect in r.stdout
