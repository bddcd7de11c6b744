"""Memory per GPU: weights, grads and optimizer bytes by hand; fits against the GPU table."""

import pytest

from soraplan.planner import build_spec
from soraplan.planner.memory import GiB, memory


def test_seed_state_bytes_by_hand():
    spec = build_spec(flags={"frames": 960, "res": 256, "tp": 8})
    m = memory(spec)
    n = 845_927_552                      # params per GPU at TP=8 (test_estimate_params)
    assert m.weights == n * 2            # bf16
    assert m.grads == n * 4              # fp32 main grads
    assert m.optimizer == n * 12         # fp32 master + 2 Adam moments; dp = 1 so nothing to shard
    assert m.capacity == 80 * GiB
    assert m.fits


def test_distributed_optimizer_shards_over_dp():
    a = memory(build_spec(flags={"tp": 8, "dp": 4, "distributed_optimizer": True}))
    b = memory(build_spec(flags={"tp": 8, "dp": 4, "distributed_optimizer": False}))
    assert a.optimizer * 4 == pytest.approx(b.optimizer)
    assert a.weights == b.weights and a.grads == b.grads


def test_sequence_parallel_and_recompute_shrink_activations():
    base = {"frames": 960, "res": 256, "tp": 8}
    sp = memory(build_spec(flags=base)).activations
    no_sp = memory(build_spec(flags={**base, "sequence_parallel": False})).activations
    full = memory(build_spec(flags={**base, "recompute": "full"})).activations
    assert full < sp < no_sp


def test_seed_does_not_fit_without_tp():
    m = memory(build_spec(flags={"frames": 960, "res": 256}))
    assert not m.fits


def test_unfused_attention_stores_scores():
    base = {"frames": 96, "res": 256, "tp": 8}
    flash = memory(build_spec(flags=base)).activations
    unfused = memory(build_spec(flags={**base, "attention_kernel": "unfused"})).activations
    # unfused keeps a*s^2 softmax probabilities per layer: 24 heads/8 x 3072^2 x 2 bytes x 40 layers
    assert unfused - flash > 40 * 3 * 3072**2 * 2 * 0.9
