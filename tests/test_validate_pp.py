"""validate under pipeline parallelism (2 gloo ranks, 1F1B and interleaved vpp=2): per-rank stage
parameters, peak in-flight saved bytes and PP communication bytes pass; a wrong in-flight count or a wrong
PP byte formula makes `soraplan validate` exit 1; one small pipeline spec validates from the CLI."""

import json

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]


def _pp_cases():
    from soraplan.validation import measure_matrix as mm

    return [c for c in mm.MATRIX if c.device == "pp"]


def test_pp_rows_pass_per_rank_with_layout():
    from soraplan.validation.measure_matrix import run_cases

    rows, errors = run_cases(_pp_cases())
    assert not errors, errors
    assert rows and all(r.ok for r in rows), [r for r in rows if not r.ok]
    for case in _pp_cases():
        mine = [r for r in rows if r.config == case.name]
        assert {r.rank for r in mine} == {0, 1} and all(r.layout["pp"] == 2 for r in mine)
        names = {r.quantity for r in mine}
        assert {"comm bytes isend PP", "comm bytes irecv PP", "comm bytes all_reduce PP"} <= names
        assert all(r.measured > 0 for r in mine if "PP" in r.quantity)
        saved = [r for r in mine if "peak saved bytes" in r.quantity]
        assert len(saved) == 2 and all(abs(r.error) <= 0.01 for r in saved)
    assert {r.layout["vpp"] for r in rows} == {1, 2}


def _one_case(monkeypatch, prefix: str):
    from soraplan.validation import measure_matrix as mm

    case = next(c for c in _pp_cases() if c.name.startswith(prefix))
    monkeypatch.setattr(mm, "cases", lambda quick=False: [case])


def _failed(monkeypatch) -> set[tuple[str, int]]:
    from typer.testing import CliRunner

    from soraplan.cli import app

    bad = CliRunner().invoke(app, ["validate", "--json"])
    assert bad.exit_code == 1, bad.output
    return {(r["quantity"], r["rank"]) for r in json.loads(bad.stdout)["rows"] if not r["ok"]}


def test_wrong_in_flight_count_makes_validate_exit_1(monkeypatch):
    """Interleaving ignored: vpp chunks x the 1F1B count of micro-batches in flight."""
    import soraplan.planner.pp_schedule as sched

    _one_case(monkeypatch, "PP=2 interleaved vpp=2, 4")
    original = sched.peak_in_flight

    def without_interleaving(pp, vpp, microbatches, stage):
        return tuple(x * vpp for x in original(pp, 1, microbatches, stage))

    monkeypatch.setattr(sched, "peak_in_flight", without_interleaving)
    assert _failed(monkeypatch) == {("rank 0 peak saved bytes, in-flight micro-batches (stage 0)", 0),
                                    ("rank 1 peak saved bytes, in-flight micro-batches (stage 1)", 1)}


def test_wrong_pp_byte_formula_makes_validate_exit_1(monkeypatch):
    """The boundary exchange counted once per stage instead of once per model chunk."""
    import soraplan.planner.comm as comm

    _one_case(monkeypatch, "PP=2 interleaved vpp=2, 4")
    original = comm.pp_comm_bytes

    def per_stage(spec, stage=0):
        d = spec.model_dump()
        d["parallel"]["vpp"] = 1
        from soraplan.planner.spec import Spec

        return original(Spec.model_validate(d), stage)

    monkeypatch.setattr(comm, "pp_comm_bytes", per_stage)
    assert _failed(monkeypatch) == {(f"comm bytes {k} PP", r) for k in ("isend", "irecv") for r in (0, 1)}


def test_one_pipeline_spec_validates_from_the_cli():
    from typer.testing import CliRunner

    from soraplan.cli import app

    small = ["--frames", "16", "--res", "64", "--latent-channels", "4", "--text-tokens", "8", "--text-dim", "32",
             "--layers", "4", "--hidden", "64", "--heads", "4", "--ffn-hidden", "256", "--precision", "fp32",
             "--micro-batch", "2", "--global-batch", "8"]
    r = CliRunner().invoke(app, ["validate", "--json", *small, "--pp", "2", "--vpp", "2", "--gpus", "2"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert {row["rank"] for row in rows} == {0, 1} and all(row["layout"]["vpp"] == 2 for row in rows)
    r = CliRunner().invoke(app, ["validate", *small, "--pp", "2", "--gpus", "4"])
    assert r.exit_code == 2 and "parallel.pp: pipeline stages are measured" in r.output


BATCH_SCRIPT = """
import torch, torch.distributed as dist
from soraplan.models.parallel import initialize
initialize(pp=2)
from soraplan.validation.comm_count import count_comm, comm_table
r = dist.get_rank()
x, y = torch.ones(10), torch.zeros(10)
with count_comm() as t:
    ops = [dist.P2POp(dist.isend, x, 1 - r), dist.P2POp(dist.irecv, y, 1 - r)]
    for w in dist.batch_isend_irecv(ops):
        w.wait()
print("TABLE", r, sorted(comm_table(t).items()), float(y.sum()))
"""


def test_batch_isend_irecv_counts_each_op_under_pp(tmp_path):
    from megatron_fixtures import torchrun

    script = tmp_path / "batch.py"
    script.write_text(BATCH_SCRIPT)
    r = torchrun(2, [str(script)], timeout_s=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    lines = sorted(line for line in r.stdout.splitlines() if line.startswith("TABLE"))
    assert lines == [f"TABLE {k} [('irecv PP', 40), ('isend PP', 40)] 10.0" for k in (0, 1)]
