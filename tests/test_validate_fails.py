"""validate can fail: a deliberately wrong planner constant (the FFN multiplier, one activation term, the
parameter count of fc1) makes the comparison fail, and the CLI exits 1."""

import json

import pytest

pytestmark = pytest.mark.megatron

SMALL = ["--frames", "16", "--res", "64", "--latent-channels", "4", "--text-tokens", "8", "--text-dim", "32",
         "--layers", "2", "--hidden", "64", "--heads", "4", "--ffn-hidden", "256", "--precision", "fp32",
         "--micro-batch", "2"]


def _wrong_ffn(spec):
    from soraplan.planner.spec import Spec

    d = spec.model_dump()
    d["model"]["ffn_hidden"] = 3 * d["model"]["hidden"]        # the FFN multiplier: 3x instead of 4x
    return Spec.model_validate(d)


def _base_rows():
    from soraplan.validation.measure_matrix import MATRIX, run_cases

    rows, errors = run_cases([MATRIX[0]])
    assert not errors
    return rows


def test_correct_planner_passes(megatron_pg):
    assert all(r.ok for r in _base_rows())


def test_wrong_ffn_multiplier_in_flops_fails(megatron_pg, monkeypatch):
    import soraplan.planner.flops as fl

    original = fl.layer_macs
    monkeypatch.setattr(fl, "layer_macs", lambda spec, layer: original(_wrong_ffn(spec), layer))
    failed = {r.quantity for r in _base_rows() if not r.ok}
    assert {"FLOPs forward", "FLOPs backward (executed)", "FLOPs forward (fvcore)"} <= failed
    assert not any(q.startswith("params") for q in failed)


def test_wrong_ffn_multiplier_in_params_fails(megatron_pg, monkeypatch):
    import soraplan.planner.params as pa

    original = pa.layer_groups
    monkeypatch.setattr(pa, "layer_groups", lambda spec: original(_wrong_ffn(spec)))
    failed = {r.quantity for r in _base_rows() if not r.ok}
    assert {"params total", "params blocks"} <= failed


def test_one_missing_activation_term_fails(megatron_pg, monkeypatch):
    import soraplan.planner.activations as act

    original = act.layer_terms

    def without_gelu_input(spec, layer=0):
        terms = dict(original(spec, layer))
        del terms["mlp.gelu_input"]                     # forget that GELU keeps its input
        return terms

    monkeypatch.setattr(act, "layer_terms", without_gelu_input)
    failed = {r.quantity for r in _base_rows() if not r.ok}
    assert failed == {"saved bytes, transformer block", "saved bytes, whole micro-batch"}


def test_cli_exit_codes(megatron_pg, monkeypatch):
    from typer.testing import CliRunner

    import soraplan.planner.flops as fl
    from soraplan.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["validate", "--json", *SMALL])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["ok"] and data["failed"] == 0 and data["rows"]
    original = fl.layer_macs
    monkeypatch.setattr(fl, "layer_macs", lambda spec, layer: original(_wrong_ffn(spec), layer))
    bad = runner.invoke(app, ["validate", *SMALL])
    assert bad.exit_code == 1
    assert "FAIL" in bad.stdout


def test_missing_outside_term_fails_the_micro_batch_not_the_block(megatron_pg, monkeypatch):
    import soraplan.planner.activations as act

    original = act.outside_terms

    def without_final_layer(spec):                      # forget what the final layer keeps
        return {k: v for k, v in original(spec).items() if not k.startswith("final.")}

    monkeypatch.setattr(act, "outside_terms", without_final_layer)
    failed = {r.quantity for r in _base_rows() if not r.ok}
    assert failed == {"saved bytes, whole micro-batch"}


def test_wrong_tp_divisor_fails_the_rank_comparison(monkeypatch):
    """TP=2 + SP in 2 gloo processes: a term declared replicated that is really split over TP fails."""
    import soraplan.planner.activations as act
    from soraplan.validation.measure_compare import tp_rows
    from soraplan.validation.measure_matrix import MATRIX, spec_for
    from soraplan.validation.measure_tp import run_tp

    case = next(c for c in MATRIX if c.device == "tp" and c.flags["sequence_parallel"])
    spec = spec_for(case)
    ranks = run_tp([spec])[0]
    assert all(r.ok for r in tp_rows(case.name, spec, ranks))
    original = act.layer_terms

    def gelu_not_split(spec, layer=0):
        terms = dict(original(spec, layer))
        t = terms["mlp.gelu_input"]
        terms["mlp.gelu_input"] = act.Term(t.per_token, t.per_sample, "1")   # wrong: fc1's output is TP-split
        return terms

    monkeypatch.setattr(act, "layer_terms", gelu_not_split)
    failed = {r.quantity for r in tp_rows(case.name, spec, ranks) if not r.ok}
    assert "rank 0 saved bytes, transformer block" in failed and "rank 1 saved bytes, whole micro-batch" in failed
