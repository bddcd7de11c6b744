"""TP=2 with and without sequence parallel equals TP=1 (loss and every gradient, fp32), 2 gloo processes."""

import json

import pytest

pytestmark = [pytest.mark.megatron, pytest.mark.slow]


def test_tp2_sp_equals_tp1_outputs_and_grads():
    from megatron_fixtures import check_rows

    rows = check_rows("tp_check")
    for row in rows:
        assert row["ok"], row
        assert row["max_rel_grad_err"] < 1e-4 and not row["zero_grads"]
    assert {json.dumps(r["case"], sort_keys=True) for r in rows} >= {json.dumps({"sequence_parallel": True}, sort_keys=True)}
    cases = [r["case"] for r in rows]
    # the current block vocabulary: gated FFN, single-stream, GQA + RoPE, MMDiT at TP=2 equal TP=1
    assert any(c.get("ffn_type") == "swiglu" and not c.get("single_layers") for c in cases)
    assert any(c.get("single_layers") for c in cases)
    assert any(c.get("kv_heads") and c.get("pos") == "rope3d" for c in cases)
    assert any(c.get("text") == "mmdit" for c in cases)
    # ... and with sequence parallelism: MMDiT streams and the hand-over, text in the sequence, an LM
    sp = [c for c in cases if c.get("sequence_parallel") and (c.get("text") or c.get("ffn_type") or c.get("vocab_size"))]
    assert any(c.get("text") == "mmdit" and c.get("single_layers") for c in sp)
    assert any(c.get("text") == "in-sequence" for c in sp) and any(c.get("vocab_size") for c in sp)
