"""The DP-CP section of planner/comm.py and the distributed optimizer's padding in planner/memory.py, by
hand; the step model's DP term is built from the same volumes."""

import numpy as np
import pytest

from soraplan.planner import build_spec
from soraplan.planner.comm import comm_constants, dp_comm_bytes, dp_volumes, tp_volumes, wire_factor
from soraplan.planner.memory import memory, optimizer_shard
from soraplan.planner.params import params_per_gpu
from soraplan.planner.scalar_ops import ScalarOps

TINY = dict(layers=2, hidden=64, heads=4, frames=16, res=64, text_tokens=8, text_dim=32, precision="fp32",
            latent_channels=4, ffn_hidden=256, micro_batch=2)


def test_dp_bytes_by_hand():
    spec = build_spec(flags={**TINY, "dp": 3, "gpus": 3})
    n = params_per_gpu(spec)
    assert n % 3 != 0
    shard = n // 3 + 1                                   # the flat buffer padded to a multiple of 3
    assert dp_comm_bytes(spec) == {"all_gather_into_tensor DP-CP": shard * 4, "reduce_scatter_tensor DP-CP": 3 * shard * 4}
    plain = build_spec(flags={**TINY, "dp": 3, "gpus": 3, "distributed_optimizer": False})
    assert dp_comm_bytes(plain) == {"all_reduce DP-CP": n * 4}
    assert dp_comm_bytes(build_spec(flags=TINY)) == {}
    # optimizer state: fp32 parameters are their own master copy; 2 fp32 moments of the padded shard
    assert memory(spec).optimizer == shard * 8
    assert memory(spec).weights == memory(spec).grads == 3 * shard * 4
    assert memory(plain).optimizer == n * 8 and memory(plain).weights == n * 4


def test_dp_group_is_dp_times_cp():
    spec = build_spec(flags={**TINY, "dp": 2, "cp": 2, "gpus": 4})
    n = params_per_gpu(spec)
    assert dp_comm_bytes(spec)["all_gather_into_tensor DP-CP"] == -(-n // 4) * 4


def test_volumes_take_arrays_like_scalars():
    spec = build_spec(flags=TINY)
    k = comm_constants(spec)
    n = np.array([10.0, 11.0, 12.0, 7.0])
    dp, cp, dist = np.array([2, 3, 1, 2]), np.array([1, 2, 1, 2]), np.array([True, True, True, False])
    arr = dp_volumes(np, k, n, dp, cp, dist)
    for i in range(4):
        one = dp_volumes(ScalarOps, k, float(n[i]), int(dp[i]), int(cp[i]), bool(dist[i]))
        assert {kk: float(v[i]) for kk, v in arr.items()} == {kk: float(v) for kk, v in one.items()}
    assert optimizer_shard(ScalarOps, 11, 3, 2, True) == 2 and optimizer_shard(ScalarOps, 11, 3, 2, False) == 11
    tp, sp = np.array([1, 2, 4]), np.array([True, False, True])
    arr = tp_volumes(np, k, tp, 32, 2, 2, sp, 0)
    for i in range(3):
        one = tp_volumes(ScalarOps, k, int(tp[i]), 32, 2, 2, bool(sp[i]), 0)
        assert {kk: float(v[i]) for kk, v in arr.items()} == {kk: float(v) for kk, v in one.items()}


def test_step_dp_term_is_the_table_times_the_ring_factor():
    from soraplan.planner.step import hw_constants, step_time

    spec = build_spec(flags={"tokens": 1024, "layers": 4, "hidden": 1024, "heads": 8, "ffn_hidden": 4096,
                             "cross_attn": False, "adaln": "none", "dp": 3, "gpus": 3, "global_batch": 3,
                             "efficiency": 0.5})    # a blanket efficiency: the flat collective efficiency
    c = hw_constants(spec)
    assert not c.eff.shaped
    bw = c.intra * c.eff.comm
    table = dp_comm_bytes(spec)
    link = (wire_factor("reduce_scatter_tensor", 3) * table["reduce_scatter_tensor DP-CP"]
            + wire_factor("all_gather_into_tensor", 3) * table["all_gather_into_tensor DP-CP"])
    assert step_time(spec).dp_comm_total_s == pytest.approx(link / bw, rel=1e-12)


def test_sp_grad_sync_by_hand():
    from soraplan.planner.comm import sp_grad_bytes

    tp2 = {**TINY, "tp": 2, "gpus": 2, "sequence_parallel": True}
    # per layer the RowParallel biases (h per sub-block), + the affine norms (2h each) with adaLN none
    assert sp_grad_bytes(build_spec(flags=tp2)) == {"all_reduce TP": 2 * 3 * 64 * 4}
    assert sp_grad_bytes(build_spec(flags={**tp2, "adaln": "none"})) == {"all_reduce TP": 2 * (3 + 6) * 64 * 4}
    assert sp_grad_bytes(build_spec(flags={**tp2, "adaln": "per-block", "cross_attn": False})) == {"all_reduce TP": 2 * 2 * 64 * 4}
    assert sp_grad_bytes(build_spec(flags={**tp2, "sequence_parallel": False})) == {}
