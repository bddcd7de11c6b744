"""Step-time model: every term hand-checked on small specs (derivations in the comments)."""

import json

import pytest

from soraplan.planner import build_spec
from soraplan.planner.errors import UserError
from soraplan.planner.params import params_per_gpu
from soraplan.planner.efficiency import comm_efficiency, current_fit
from soraplan.planner.scalar_ops import ScalarOps
from soraplan.planner.step import OP_EFFICIENCY, load_calibration, op_efficiency, step_time

A100 = OP_EFFICIENCY["a100-80g"]        # gemm .65, attention .55, hbm .80, comm .80
NVLINK = 300e9 * A100.comm              # a100-80g: 300 GB/s per direction, 80 % reached -> 240 GB/s
NET = 25e9 * A100.comm                  # 25 GB/s per GPU per direction -> 20 GB/s
HBM = 2.039e12 * A100.hbm


def fitted_nvlink(message_bytes):
    """A100 NVLink at the fitted collective efficiency for this message size (specs without an efficiency
    override use the backtest's fit, planner/efficiency.py)."""
    return 300e9 * comm_efficiency(ScalarOps, current_fit(), True, message_bytes, 300e9, 25e9)


def small(**kw):
    """4 layers x h=1024, 8 heads, FFN 4h, no cross-attention, no adaLN, 1024 tokens given directly."""
    flags = dict(tokens=1024, layers=4, hidden=1024, heads=8, ffn_hidden=4096, cross_attn=False, adaln="none", efficiency=0.5)
    flags.update(kw)
    return build_spec(flags=flags)


def test_compute_terms_by_hand():
    st = step_time(small(pp=2, global_batch=4, micro_batch=1))   # tp=1, cp=1, dp=1, m = 4 micro-batches
    # GEMM MACs per layer: qkv+proj 4 s h^2 + MLP 2 s h f (f = 4h) = 12 s h^2 = 12 * 1024 * 1024^2
    # embedders once per sample: patch 1024*16*8*1024, t_embedder 256*1024 + 1024^2, final 1024*1024*8*16
    linear = 12 * 1024 * 1024**2 * 4
    embed = 1024 * 16 * 8 * 1024 + (256 * 1024 + 1024**2) + 1024 * 1024 * 8 * 16
    gemm_flops = 3 * 2 * (linear + embed)                 # train = 3 x forward, 1 MAC = 2 FLOPs
    share = 4 * 1 / 2                                     # m*b samples / (tp*pp*cp) of the work per rank
    assert st.gemm_s == pytest.approx(gemm_flops * share / (312e12 * 0.5), rel=1e-12)
    # attention cores: QK^T + AV = 2 s K h MACs per layer, K = s (full, bidirectional, not halved)
    core = 2 * 1024 * 1024 * 1024 * 4
    assert st.attention_s == pytest.approx(3 * 2 * core * share / (312e12 * 0.5), rel=1e-12)
    # elementwise per token per layer, forward: norm1 2h + residual 3h + norm2 2h + residual 3h = 10h
    # (outside TP) and GELU 2f (inside), at 2 bytes; x3 for fwd + bwd; token-layers per rank = m b s L/pp
    ew_bytes = 3 * (10 * 1024 * 2 + 2 * 4096 * 2) * (4 * 1 * 1024 * 2)
    assert st.elementwise_s == pytest.approx(ew_bytes / HBM, rel=1e-12)
    assert st.compute_s == pytest.approx(st.gemm_s + st.attention_s + st.elementwise_s, rel=1e-12)


def test_bubble_and_p2p_by_hand():
    st = step_time(small(pp=2, global_batch=4, micro_batch=1))
    # bubble (p-1)/(v m) of the busy time; tp = cp = 1: no TP or CP communication
    assert st.tp_comm_s == 0 and st.cp_comm_s == 0
    assert st.pp_bubble_s == pytest.approx((2 - 1) / (1 * 4) * st.compute_s, rel=1e-12)
    # p2p: 2 sends (activation fwd, gradient bwd) per micro-batch and virtual stage, s b h B bytes, NVLink
    # (both stages in one node)
    assert st.pp_p2p_s == pytest.approx(2 * 4 * 1 * (1024 * 1 * 1024 * 2) / NVLINK, rel=1e-12)
    inter = step_time(small(pp=4, vpp=1, global_batch=8, micro_batch=1))   # 8 micro-batches, bubble 3/8
    assert inter.pp_bubble_s == pytest.approx(3 / 8 * inter.compute_s, rel=1e-12)
    il = step_time(small(pp=2, vpp=2, global_batch=4, micro_batch=1))      # interleaved: (p-1)/(v m) = 1/8
    assert il.pp_bubble_s == pytest.approx(1 / 8 * il.compute_s, rel=1e-12)
    assert il.pp_p2p_s == pytest.approx(2 * 4 * 2 * (1024 * 1024 * 2) / NVLINK, rel=1e-12)


def test_tp_comm_by_hand_seed():
    spec = build_spec(flags={"frames": 960, "res": 256, "tp": 8})
    st = step_time(spec)
    # per layer and micro-batch: 3 sub-blocks (self-attn, cross-attn, MLP); with SP 5 collectives of
    # (t-1)/t * s b h B (s b h B = 30720 * 3072 * 2 bytes) each: forward AG + RS, backward AG of the output
    # gradient, RS of the input gradient and the re-AG of the saved sharded input
    act = 30720 * 1 * 3072 * 2
    bw = fitted_nvlink(act)                            # one collective efficiency for the TP traffic (its size)
    per_layer = 3 * 5 * (8 - 1) / 8 * act / bw
    # outside the sub-blocks (planner/comm.py's measured table): the final layer's all-gather and the
    # scatter's backward (2 x (t-1)/t s b h B), and per layer all-reduces (2 (t-1)/t) of adaLN single's
    # [b, 6h] modulation gradient and the text K/V projection's input gradient [T = 512, b, h]
    final = 2 * (8 - 1) / 8 * act / bw
    small_ar = 40 * (6 * 3072 * 2 + 512 * 3072 * 2) * 2 * (8 - 1) / 8 / bw
    assert st.tp_comm_s == pytest.approx(per_layer * 40 + final + small_ar, rel=1e-12)
    # without SP: one all-reduce (2 units) per sub-block forward and backward: 4 units, + the text K/V
    # input gradient's all-reduce per layer
    no_sp = step_time(build_spec(flags={"frames": 960, "res": 256, "tp": 8, "sequence_parallel": False}))
    text_ar = 40 * 512 * 3072 * 2 * 2 * (8 - 1) / 8 / bw
    assert no_sp.tp_comm_s == pytest.approx(3 * 4 * (8 - 1) / 8 * act / bw * 40 + text_ar, rel=1e-12)
    # full recompute runs the forward (and its 2 units) again: 7 units with SP, 6 without
    rc = step_time(build_spec(flags={"frames": 960, "res": 256, "tp": 8, "recompute": "full"}))
    assert rc.tp_comm_s == pytest.approx(per_layer * 40 * 7 / 5 + final + small_ar, rel=1e-12)
    rc_no_sp = step_time(build_spec(flags={"frames": 960, "res": 256, "tp": 8, "recompute": "full",
                                           "sequence_parallel": False}))
    assert rc_no_sp.tp_comm_s == pytest.approx(3 * 6 * (8 - 1) / 8 * act / bw * 40 + text_ar, rel=1e-12)
    assert rc.recompute_s > 0 and rc.compute_s > st.compute_s


def test_tp_over_node_is_penalised_not_forbidden():
    spec = small(heads=16, tp=16)
    st = step_time(spec)
    assert st.tp_over_node
    act = 1024 * 1024 * 2
    # 2 sub-blocks x 5 (SP) per layer + the final layer's gather and the scatter's backward, network bw
    assert st.tp_comm_s == pytest.approx((2 * 5 * 4 + 2) * 15 / 16 * act / NET, rel=1e-12)


def test_cp_ring_overlapped_with_attention():
    st = step_time(small(cp=2))
    # p2p (the default): K/V of the local half, 2 s b h B / t = 2 * 512 * 1024 * 2; (cp-1) = 1 hop forward,
    # backward 1 hop of K/V and cp = 2 of dK/dV: 4 sends per layer, every layer (full attention), the one
    # micro-batch; + the final layer's all-gather of the hidden states and its gradient's reduce-scatter,
    # (cp-1) s b h B each; NVLink (tp*cp = 2 GPUs in a node)
    total = (4 * (2 * 512 * 1024 * 2) * 4 + 2 * 512 * 1024 * 2) / NVLINK * 1
    assert st.cp_comm_total_s == pytest.approx(total, rel=1e-12)
    assert st.cp_comm_s == pytest.approx(max(0.0, total - st.attention_s), rel=1e-12)
    # window attention keeps whole windows on a rank: no exchange in the layers; only the final layer's
    # all-gather of the hidden states (and its gradient's reduce-scatter): 2 (cp-1) s b h B
    win = step_time(build_spec(flags={"frames": 960, "res": 256, "cp": 3, "attention": "window:8,16,16"}))
    act = 10240 * 3072 * 2
    assert win.cp_comm_total_s == pytest.approx(2 * 2 * act / fitted_nvlink(act), rel=1e-12)


def test_dp_sync_overlap_by_hand():
    spec = small(dp=16, global_batch=64, micro_batch=1)     # 16 GPUs = 2 nodes: the DP ring runs on the network
    st = step_time(spec)
    n = params_per_gpu(spec)
    g = 16
    rs = (g - 1) / g * n * 4 / NET                        # fp32 gradients reduce-scattered
    ag = (g - 1) / g * n * 2 / NET                        # bf16 parameters all-gathered
    m = 64 // 16
    fwd_mb = st.compute_s / m / 3                         # one micro-batch's forward (no recompute)
    assert st.dp_comm_total_s == pytest.approx(rs + ag, rel=1e-12)
    assert st.dp_comm_s == pytest.approx(max(0, rs - 2 * fwd_mb) + max(0, ag - fwd_mb), rel=1e-12)
    plain = step_time(small(dp=16, global_batch=64, micro_batch=1, distributed_optimizer=False))
    assert plain.dp_comm_total_s == pytest.approx(2 * rs, rel=1e-12)   # one all-reduce = RS + AG of fp32 grads
    # optimizer: grads read twice (4+4), master + 2 moments read and written (2 * 12), bf16 param written (2)
    assert st.optimizer_s == pytest.approx(n / 16 * (8 + 24 + 2) / HBM, rel=1e-12)
    assert plain.optimizer_s == pytest.approx(n * (8 + 24 + 2) / HBM, rel=1e-12)


def test_time_is_the_sum_and_mfu():
    st = step_time(small(pp=2, cp=2, tp=2, dp=2, global_batch=8, micro_batch=1))
    parts = st.compute_s + st.tp_comm_s + st.cp_comm_s + st.dp_comm_s + st.pp_bubble_s + st.pp_p2p_s + st.optimizer_s
    assert st.time_s == pytest.approx(parts, rel=1e-12)
    assert st.samples_per_s == pytest.approx(8 / st.time_s)
    assert 0 < st.mfu < st.efficiency <= 0.5 + 1e-12


def test_efficiency_precedence(tmp_path):
    spec = build_spec(flags={"frames": 960, "res": 256})
    fit = current_fit()
    assert op_efficiency(spec).gemm == fit.gemm_max["ampere"] and op_efficiency(spec).attention == fit.attn_max["ampere"]
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"gpu": "a100-80g", "efficiency": 0.42, "gemm_efficiency": 0.6, "attention_efficiency": 0.5}))
    e = op_efficiency(build_spec(flags={"calibration": str(cal)}))
    assert (e.gemm, e.attention) == (0.6, 0.5) and "calibration" in e.source
    e = op_efficiency(build_spec(flags={"calibration": str(cal), "efficiency": 0.3}))
    assert (e.gemm, e.attention) == (0.3, 0.3)
    e = op_efficiency(build_spec(config=None, flags={"efficiency": 0.3}))
    assert e.gemm == 0.3


def test_calibration_from_run_log(tmp_path):
    log = tmp_path / "run.jsonl"
    rows = [{"step": i, "step_time_s": 2.0, "tflops_per_gpu": 130.0, "mfu": 0.1 if i == 0 else 0.42} for i in range(20)]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    assert load_calibration(str(log), "a100-80g") == {"efficiency": pytest.approx(0.42)}


@pytest.mark.parametrize("content, match", [
    ('{"gpu": "h100-sxm", "efficiency": 0.4}', "measured on"),
    ('{"gpu": "a100-80g", "efficiency": 1.7}', "efficiency must be"),
    ('{"gpu": "a100-80g"}', "has no efficiency"),
    ("hello", "neither a calibration JSON"),
])
def test_calibration_errors(tmp_path, content, match):
    p = tmp_path / "c.json"
    p.write_text(content)
    with pytest.raises(UserError, match=match):
        load_calibration(str(p), "a100-80g")
    with pytest.raises(UserError, match="cannot read"):
        load_calibration(str(tmp_path / "missing.json"), "a100-80g")


def test_estimate_keeps_its_step_fields():
    from soraplan.planner.estimate import estimate

    out = estimate(build_spec(flags={"frames": 960, "res": 256, "tp": 8}), compare=False).to_json()
    terms = out["step"]["terms"]
    for key in ("compute_s", "tp_comm_s", "cp_comm_s", "dp_comm_s", "pp_bubble_s", "pp_p2p_s", "optimizer_s",
                "efficiency", "mfu", "samples_per_step", "time_s", "samples_per_s"):
        assert key in terms
    assert out["step"]["time_s"] == pytest.approx(terms["time_s"])


def test_calibration_from_tflops_when_mfu_is_missing(tmp_path):
    log = tmp_path / "run.jsonl"
    log.write_text("\n".join(json.dumps({"step": i, "step_time_s": 2.0, "tflops_per_gpu": 156.0}) for i in range(5)))
    assert load_calibration(str(log), "a100-80g", 312.0) == {"efficiency": pytest.approx(0.5)}
