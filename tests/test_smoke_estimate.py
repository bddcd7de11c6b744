"""Smoke: the seed scenario gives 30,720 tokens."""

from soraplan.planner import build_spec


def test_seed_tokens():
    spec = build_spec(flags={"frames": 960, "res": 256, "tp": 8})
    assert spec.seq_len == 30_720
