"""The block-vocabulary spec flags (--ffn-type, --kv-heads, --pos, --text, ...) equal the YAML route."""

import json

from typer.testing import CliRunner

from soraplan.cli import app

runner = CliRunner()


def _estimate(*args: str) -> dict:
    result = runner.invoke(app, ["estimate", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_gated_ffn_gqa_rope_flags_change_params_as_the_yaml(tmp_path):
    base = _estimate()
    got = _estimate("--ffn-type", "swiglu", "--kv-heads", "8", "--pos", "rope3d")
    cfg = tmp_path / "k.yaml"
    cfg.write_text("model:\n  ffn_type: swiglu\n  kv_heads: 8\n  pos: rope3d\n")
    assert got == _estimate("-c", str(cfg))
    m = base["spec"]["model"]
    h, f, L, d = m["hidden"], m["ffn_hidden"], m["layers"], m["hidden"] // m["heads"]
    kv = 8 * d
    # a third FFN matrix (with bias); self- and cross-attention K and V shrink from h to 8 heads
    per_layer = (h * f + f) - 2 * 2 * (h * (h - kv) + (h - kv))
    assert got["params"]["total"] - base["params"]["total"] == L * per_layer
    assert got["spec"]["model"]["ffn_type"] == "swiglu" and got["spec"]["model"]["pos"] == "rope3d"


def test_text_and_single_layers_flags(tmp_path):
    got = _estimate("--text", "mmdit", "--single-layers", "2", "--adaln", "per-block", "--qk-norm", "rmsnorm")
    cfg = tmp_path / "k.yaml"
    cfg.write_text("model:\n  text: mmdit\n  single_layers: 2\n  adaln: per-block\n  qk_norm: rmsnorm\n")
    assert got == _estimate("-c", str(cfg))
    assert got["params"]["groups"]["single_blocks"] > 0


def test_language_model_flags():
    got = _estimate("--model", "llama-3-8b", "--untied-embeddings", "--vocab-size", "1000")
    assert got["spec"]["model"]["vocab_size"] == 1000


def test_bad_choice_is_one_line():
    result = runner.invoke(app, ["estimate", "--ffn-type", "relu"])
    assert result.exit_code == 2
    assert "ffn_type" in result.output and "Traceback" not in result.output
