"""The step model's and the activation model's conventions, checked by hand: one FLOP convention for the
step model and the GPU calibration, the optimizer step sharded like its memory, Megatron's fused softmax."""

import pytest

from soraplan.planner import build_spec
from soraplan.planner.activations import fused_softmax, layer_breakdown
from soraplan.planner.params import params_per_gpu
from soraplan.planner.step import OP_EFFICIENCY, TRAIN_FLOPS_PER_FORWARD, op_work, step_time

HBM = 2.039e12 * OP_EFFICIENCY["a100-80g"].hbm


def test_calibration_and_step_model_share_the_flop_convention():
    from soraplan.validation.measure_gpu import attention_efficiency

    # one layer, no cross-attention: the step model's attention FLOPs are the microbenchmark's core
    spec = build_spec(flags={"tokens": 4096, "layers": 1, "hidden": 1024, "heads": 8, "cross_attn": False})
    peak, seconds = 312e12, 0.0123
    eff = attention_efficiency(spec, seconds, peak)
    # at the efficiency it measured, the step model predicts exactly the measured time for that kernel
    assert op_work(spec).attn_flops / (peak * eff) == pytest.approx(seconds, rel=1e-12)
    assert TRAIN_FLOPS_PER_FORWARD == 3.0
    assert eff == pytest.approx(3.0 * 4 * 4096**2 * 1024 / seconds / peak, rel=1e-12)


def test_optimizer_step_shards_over_dp_times_cp():
    flags = {"tokens": 1024, "layers": 4, "hidden": 1024, "heads": 8, "cross_attn": False, "adaln": "none"}
    a = build_spec(flags={**flags, "cp": 2, "dp": 4, "global_batch": 4})
    n = params_per_gpu(a)
    # grads read twice (fp32: 8), master + 2 moments read and written (24), bf16 param written (2)
    assert step_time(a).optimizer_s == pytest.approx(n / 8 * 34 / HBM, rel=1e-12)
    b = build_spec(flags={**flags, "cp": 2, "dp": 4, "global_batch": 4, "distributed_optimizer": False})
    assert step_time(b).optimizer_s == pytest.approx(n * 34 / HBM, rel=1e-12)


def _unfused(**kw):
    flags = {"frames": 16, "res": 64, "layers": 2, "hidden": 64, "heads": 4, "text_tokens": 8, "text_dim": 32,
             "attention_kernel": "unfused", "precision": "bf16"}
    return build_spec(flags={**flags, **kw})


def test_fused_softmax_keeps_16_bit_probabilities_on_gpu():
    # 32 tokens x 64x64/16 ... the tiny grid: 16 frames at 64x64 -> 32 tokens; the text has 8 (<= 16: torch)
    gpu = _unfused()
    cpu = _unfused(cpu_semantics=True)
    s = gpu.seq_len
    assert fused_softmax(gpu, s) and not fused_softmax(cpu, s)
    assert not fused_softmax(gpu, 8) and not fused_softmax(gpu, 8192)     # the kernel's key range: 16 < K <= 4096
    g, c = layer_breakdown(gpu), layer_breakdown(cpu)
    a, B = 4, 2
    # GPU: the kernel's bf16 output, shared by the AV matmul; CPU: fp32 output + the bf16 copy AV keeps
    assert g["self_attn.softmax_out"] == s * a * s * B
    assert "self_attn.attn_probs" not in g
    assert c["self_attn.softmax_out"] == s * a * s * 4 and c["self_attn.attn_probs"] == s * a * s * B
    # cross-attention over 8 text tokens falls back to torch on the GPU too
    assert g["cross_attn.softmax_out"] == s * a * 8 * 4 and g["cross_attn.attn_probs"] == s * a * 8 * B
    # 6B-like long sequences (30,720 keys) exceed the kernel: fp32 as before
    long = build_spec(flags={"frames": 960, "res": 256, "attention_kernel": "unfused"})
    assert not fused_softmax(long, long.seq_len)


def test_cp_variants_by_hand():
    base = {"tokens": 1024, "layers": 4, "hidden": 1024, "heads": 8, "cross_attn": False, "adaln": "none",
            "efficiency": 0.5, "cp": 2}
    nvlink = 300e9 * OP_EFFICIENCY["a100-80g"].comm
    act = 512 * 1024 * 2                           # one CP rank's [s, b, h] in bf16
    final = 2 * act                                # final-layer all-gather + gradient reduce-scatter
    ag = step_time(build_spec(flags={**base, "cp_comm": "all-gather"}))
    # all-gather K and V forward, reduce-scatter dK, dV backward: (cp-1) * 2 act each; not overlapped
    assert ag.cp_comm_total_s == pytest.approx((2 * 2 * act * 4 + final) / nvlink, rel=1e-12)
    assert ag.cp_comm_s == ag.cp_comm_total_s
    a2a = step_time(build_spec(flags={**base, "cp_comm": "a2a"}))
    # q, k, v and the output, (cp-1)/cp of each, forward and backward
    assert a2a.cp_comm_total_s == pytest.approx((0.5 * 4 * act * 2 * 4 + final) / nvlink, rel=1e-12)
    assert a2a.cp_comm_s == a2a.cp_comm_total_s
    p2p = step_time(build_spec(flags={**base, "cp_comm": "p2p"}))
    assert p2p.cp_comm_s == pytest.approx(max(0.0, p2p.cp_comm_total_s - p2p.attention_s), rel=1e-12)


def test_cp_all_gather_keeps_more_activation_memory_than_p2p():
    from soraplan.planner.memory import memory

    seed = {"frames": 960, "res": 256, "cp": 8}
    p2p = memory(build_spec(flags={**seed, "cp_comm": "p2p"})).activations
    ag = memory(build_spec(flags={**seed, "cp_comm": "all-gather"})).activations
    a2a = memory(build_spec(flags={**seed, "cp_comm": "a2a"})).activations
    # all-gather keeps every layer's gathered K and V: 40 layers x 2 x 30,720 x 3072 x 2 bytes
    assert ag - p2p > 40 * 2 * 30720 * 3072 * 2 * 0.9
    assert p2p < a2a < ag


def test_cp_refusals_are_one_line_and_shared():
    from soraplan.planner.cp import cp_refusal, spec_cp_refusal

    assert cp_refusal("full", "flash", 0.0, 24, 1, 8, "p2p") is None
    assert cp_refusal("window", "flash", 0.0, 24, 1, 2, "a2a") is None
    assert "a2a" in cp_refusal("window", "flash", 0.0, 24, 1, 2, "p2p")
    assert "heads (24) % (tp*cp = 16)" in cp_refusal("full", "flash", 0.0, 24, 2, 8, "a2a")
    assert "unfused" in cp_refusal("full", "unfused", 0.0, 24, 1, 2, "all-gather")
    assert "dropout" in cp_refusal("full", "flash", 0.1, 24, 1, 2, "p2p")
    assert cp_refusal("full", "unfused", 0.1, 24, 1, 1, "p2p") is None     # cp = 1: nothing to refuse
    spec = build_spec(flags={"frames": 960, "res": 256, "cp": 4, "attention": "spatial-temporal"})
    assert spec_cp_refusal(spec) is not None
