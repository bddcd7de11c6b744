"""The communication table of the current block vocabulary (planner/comm_blocks.py) against byte counts that
`soraplan validate` measured on the model (validation/comm_count.py, 2 and 4 gloo ranks; the validate rows
re-measure them), and a wrong prediction fails the row."""

import pytest

from soraplan.planner.comm import comm_bytes
from soraplan.planner.config import build_spec
from soraplan.validation.measure_blocks import TP_CASES
from soraplan.validation.measure_compare import comm_rows
from soraplan.validation.measure_matrix import BASE

MMDIT = "MMDiT double + single stream"
# measured per rank (rank 0) by validation/measure_tp.py for the TP_CASES rows of these names
MEASURED = {
    "SwiGLU, GQA, RMSNorm, QK-norm, RoPE at TP=2 (2 gloo ranks)": {"all_reduce TP": 204800},
    f"{MMDIT} at TP=2 + SP (2 gloo ranks)": {"all_gather_into_tensor TP": 202752, "all_reduce TP": 15360,
                                              "reduce_scatter_tensor TP": 245760},
    "LM: causal, GQA, SwiGLU, RoPE at TP=2 + SP (2 gloo ranks)": {
        "all_gather_into_tensor TP": 126976, "all_reduce TP": 32768, "reduce_scatter_tensor TP": 131072},
    f"{MMDIT} at CP=2 a2a (2 gloo ranks)": {"all_gather_into_tensor CP": 16384, "all_to_all_single CP": 589824,
                                            "reduce_scatter_tensor CP": 32768},
    f"{MMDIT} at CP=2 p2p x TP=2 + SP (4 gloo ranks)": {
        "all_gather_into_tensor CP": 16384, "all_gather_into_tensor TP": 183296, "all_reduce TP": 15360,
        "irecv CP": 294912, "isend CP": 294912, "reduce_scatter_tensor CP": 32768,
        "reduce_scatter_tensor TP": 221184},
}


def _spec(name):
    return build_spec(flags={**BASE, **dict(TP_CASES)[name]})


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_prediction_equals_the_measured_bytes(name):
    assert comm_bytes(_spec(name)) == MEASURED[name]


def test_a_wrong_prediction_fails_the_row(monkeypatch):
    from soraplan.planner import comm_blocks

    name = f"{MMDIT} at TP=2 + SP (2 gloo ranks)"
    spec = _spec(name)
    assert all(r.ok and r.tolerance == 0 for r in comm_rows(name, spec, MEASURED[name], {}, 0))
    original = comm_blocks.comm_blocks

    def no_text_scatter(s):   # forgets the MMDiT text stream's SP scatter
        out = original(s)
        out["all_gather_into_tensor TP"] -= 8 * 2 * 64 * 4 // 2
        return out

    monkeypatch.setattr(comm_blocks, "comm_blocks", no_text_scatter)
    assert not all(r.ok for r in comm_rows(name, spec, MEASURED[name], {}, 0))
