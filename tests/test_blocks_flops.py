"""FLOPs of the current block vocabulary, derived by hand (planner/blocks_flops.py)."""

from soraplan.planner.config import build_spec
from soraplan.planner.flops import flops, layer_macs


def test_llama_3_8b_forward_by_hand():
    # per layer and token: q/o 2h^2, k/v 2*h*1024 (8 kv heads of 128), SwiGLU 3hf; causal core h*s*s (half)
    s, h, f, V = 8192, 4096, 14336, 128256
    spec = build_spec(flags={"model": "llama-3-8b"})
    x = layer_macs(spec, 0)
    assert x.self_linear == s * (2 * h * h + 2 * h * 1024)
    assert x.mlp == s * 3 * h * f
    assert x.self_core == h * s * s                 # flash skips the masked half
    assert x.cross_linear == x.cross_core == x.adaln == 0
    fl = flops(spec)
    assert fl.forward == 2 * (32 * (x.linear + x.self_core) + s * h * V)    # + the output logits
    # the weight part is 2 x (parameters less the token embedding) per token
    assert 2 * 32 * x.linear == 2 * s * (8_030_261_248 - 2 * V * h - 4096 - 32 * 2 * h)


def test_causal_is_half_of_bidirectional():
    causal = build_spec(flags={"model": "llama-3-8b"})
    bidir = build_spec(flags={"model": "llama-3-8b", "tokens": 8192})
    data = bidir.model_dump()
    data["model"]["causal"] = False
    from soraplan.planner.spec import Spec

    full = layer_macs(Spec.model_validate(data), 0).self_core
    half = layer_macs(causal, 0).self_core
    assert full == 2 * 8192 * 8192 * 4096 and half == full // 2


def test_mmdit_joint_attention_and_single_blocks():
    spec = build_spec(flags={"model": "hunyuanvideo"})
    s = 118_800 + 256                                 # video + text in one attention
    h, f = 3072, 12288
    dbl, sgl = layer_macs(spec, 0), layer_macs(spec, 20)
    assert spec.seq_len == s
    assert dbl.self_linear == s * 4 * h * h and dbl.mlp == s * 2 * h * f and dbl.adaln == 2 * 6 * h * h
    assert dbl.self_core == sgl.self_core == 2 * s * s * h
    assert sgl.self_linear + sgl.mlp == s * h * (3 * h + f) + s * (h + f) * h and sgl.adaln == 3 * h * h
    assert flops(spec).by_part["self_attn_core"] == 2 * 60 * 2 * s * s * h


def test_in_sequence_expert_adaln():
    spec = build_spec(flags={"model": "cogvideox-5b"})
    s, h = 17_550 + 226, 3072
    x = layer_macs(spec, 0)
    assert x.self_linear == s * 4 * h * h and x.adaln == 2 * 512 * 6 * h and x.cross_core == 0


def test_mochi_asymmetric_last_block():
    spec = build_spec(flags={"model": "mochi-1"})
    sv, T, h, hy = 44_520, 256, 3072, 1536
    x, last = layer_macs(spec, 0), layer_macs(spec, 47)
    assert x.mlp == sv * 3 * h * 8192 + T * 3 * hy * 4096
    assert last.mlp == sv * 3 * h * 8192
    assert x.self_linear - last.self_linear == T * h * hy
