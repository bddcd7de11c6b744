"""Saved activations of the new blocks (planner/blocks_activations.py): structure and hand-derived terms."""

from soraplan.planner.activations import layer_terms, outside_terms, stage_activations
from soraplan.planner.config import build_spec


def test_llama_layer_terms_by_hand():
    spec = build_spec(flags={"model": "llama-3-8b"})
    h, f, kv, B = 4096, 14336, 1024, 2
    t = layer_terms(spec)
    assert t["self_attn.qkv"].per_token == (h + 2 * kv) * B          # GQA: 8 kv heads
    assert t["self_attn.qk_new"].per_token == (h + kv) * B           # rotated q and k are new tensors
    assert t["mlp.fc1_out"].per_token == 2 * f * B and t["mlp.act_out"].per_token == f * B
    assert t["norm1.stats"].per_token == 4 + 2                        # RMSNorm: rstd in fp32 and in bf16
    assert t["norm1.fp32_input"].per_token == 4 * h                   # the fp32 copy its square keeps
    assert "adaln.mod" not in t and "cross_attn.q" not in t


def test_lm_head_and_loss_are_counted():
    spec = build_spec(flags={"model": "llama-3-8b"})
    o = outside_terms(spec)
    assert o["loss.log_softmax"].per_token == 128256 * 4 and o["embed.token_ids"].per_token == 8


def test_mmdit_and_single_blocks_are_in_the_stage():
    spec = build_spec(flags={"model": "hunyuanvideo", "tp": 8})
    d, s = layer_terms(spec, 0), layer_terms(spec, 20)
    assert d["adaln.mod"].per_sample == 2 * 6 * 3072 * 2               # one modulation per stream
    assert "linear2.input" in s and "linear2.input" not in d
    act = stage_activations(spec)
    assert act["total"] > 60 * act["per_layer"] / 2
