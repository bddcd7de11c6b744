"""The distributed optimizer (models/zero.py) in `soraplan train`: flat buffers sharded over the dp·cp ranks
give the loss curve of the replicated optimizer, under CP and TP too."""

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]


def _losses(run) -> dict[int, float]:
    return {json.loads(x)["step"]: json.loads(x)["loss"] for x in (Path(run) / "log.jsonl").read_text().splitlines()}


@pytest.mark.parametrize("layout", [["--dp", "2"], ["--dp", "2", "--cp", "2"], ["--dp", "2", "--tp", "2"]],
                         ids=["dp2", "dp2-cp2", "dp2-tp2"])
def test_sharded_equals_replicated(tmp_path, layout):
    from megatron_fixtures import torchrun

    nproc = 2 * (2 if len(layout) > 2 else 1)
    runs = {}
    for flag in ("--distributed-optimizer", "--no-distributed-optimizer"):
        run = tmp_path / flag.strip("-")
        r = torchrun(nproc, ["-m", "soraplan", "train", "--tiny", *layout, flag, "--steps", "3", "--save-every", "0",
                             "--log-every", "100", "--run-dir", str(run)])
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        runs[flag] = (_losses(run), r.stdout)
    (a, out_a), (b, out_b) = runs["--distributed-optimizer"], runs["--no-distributed-optimizer"]
    assert "AdamW state sharded over DP·CP" in out_a and "AdamW replicated over DP·CP" in out_b
    assert a.keys() == b.keys() == {1, 2, 3}
    assert all(abs(a[k] - b[k]) <= 1e-6 * abs(b[k]) for k in a), (a, b)


def test_resume_with_another_sharding_is_refused(tmp_path):
    """One optimizer shard per dp·cp rank: a checkpoint resumes only with the same sharding."""
    from megatron_fixtures import torchrun

    run = tmp_path / "run"
    common = ["-m", "soraplan", "train", "--tiny", "--dp", "2", "--log-every", "100", "--run-dir", str(run)]
    r = torchrun(2, [*common, "--steps", "1"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = torchrun(2, [*common, "--steps", "2", "--no-distributed-optimizer"])
    assert r.returncode != 0
    assert "was written with distributed_optimizer True (this run: False)" in r.stdout + r.stderr
