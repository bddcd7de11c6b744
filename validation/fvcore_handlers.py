"""fvcore op handlers for what a Megatron-core DiT runs, so FlopCountAnalysis counts all of its matmuls.

fvcore traces the model with torch.jit and counts only ops it has a handler for. Out of the box it misses:
  * Megatron's linear autograd Function (ColumnParallelLinear / RowParallelLinear call
    `LinearWithGradAccumulationAndAsyncCommunication.apply`), which the tracer records as
    `prim::PythonOp.LinearWithGradAccumulationAndAsyncCommunication` with tensor inputs (input, weight[, bias]);
  * `aten::baddbmm` (Megatron's unfused DotProductAttention: QK^T into a preallocated buffer);
  * `aten::scaled_dot_product_attention` (the flash path).
fvcore counts MACs ("one flop = one fused multiply-add") and forward only; `fvcore_forward_flops` converts to
FLOPs (x2) so the numbers line up with torch's FlopCounterMode and the planner. Norms and other
elementwise handlers are switched off: the planner counts matmuls and attention cores only.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import torch

MEGATRON_LINEAR_OPS = (
    "prim::PythonOp.LinearWithGradAccumulationAndAsyncCommunication",
    "prim::PythonOp.LinearWithFrozenWeight",
)


def _shape(value: Any) -> list[int] | None:
    from fvcore.nn.jit_handles import get_shape

    return get_shape(value)


def megatron_linear_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """input [..., k] @ weight[n, k]^T: prod(input[:-1]) * k * n MACs (bias not counted)."""
    x, w = _shape(inputs[0]), _shape(inputs[1])
    assert x is not None and w is not None and len(w) == 2, (x, w)
    return math.prod(x[:-1]) * x[-1] * w[0]


def baddbmm_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """beta*input + alpha*(batch1 [b, n, k] @ batch2 [b, k, m]): b*n*k*m MACs."""
    b1, b2 = _shape(inputs[1]), _shape(inputs[2])
    assert b1 is not None and b2 is not None
    return b1[0] * b1[1] * b1[2] * b2[2]


def sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """q [..., s, d], k [..., K, d], v [..., K, dv]: QK^T s*K*d + AV s*K*dv per batch x head."""
    q, k, v = _shape(inputs[0]), _shape(inputs[1]), _shape(inputs[2])
    assert q is not None and k is not None and v is not None
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def handlers() -> dict[str, Any]:
    """fvcore's own matmul/conv handlers + ours; no norm or other elementwise handlers."""
    from fvcore.nn import jit_handles as j

    h: dict[str, Any] = {"aten::addmm": j.addmm_flop_jit, "aten::bmm": j.bmm_flop_jit, "aten::_convolution": j.conv_flop_jit,
                         "aten::einsum": j.einsum_flop_jit, "aten::matmul": j.matmul_flop_jit,
                         "aten::mm": j.matmul_flop_jit, "aten::linear": j.linear_flop_jit}
    h.update({name: megatron_linear_macs for name in MEGATRON_LINEAR_OPS})
    h["aten::baddbmm"] = baddbmm_macs
    h["aten::scaled_dot_product_attention"] = sdpa_macs
    return h


@contextlib.contextmanager
def _tensor_state_only() -> Iterator[None]:
    """Megatron modules put `_extra_state: None` in their state_dict (a Transformer-Engine/fp8 hook);
    torch.jit's tracer feeds every state_dict value to the trace as an input and rejects the None.
    Drop non-tensor entries while fvcore traces."""
    import torch.jit._trace as jt

    original = jt._unique_state_dict

    def tensors_only(module: Any, keep_vars: bool = False) -> Any:
        state = original(module, keep_vars)
        for key in [k for k, v in state.items() if not isinstance(v, torch.Tensor)]:
            del state[key]
        return state

    jt._unique_state_dict = tensors_only
    try:
        yield
    finally:
        jt._unique_state_dict = original


def fvcore_forward_flops(model: Any, inputs: tuple[Any, ...]) -> dict[str, Any]:
    """Forward FLOPs (= 2 x fvcore's MACs) in total, by op and by top-level module; unsupported ops listed."""
    import warnings

    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, inputs).clear_op_handles().set_op_handle(**handlers())
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with warnings.catch_warnings(), _tensor_state_only():
        warnings.simplefilter("ignore")
        total_macs = analysis.total()
        by_op = analysis.by_operator()
        by_module = analysis.by_module()
        unsupported = dict(analysis.unsupported_ops())
    return {
        "forward": 2 * int(total_macs),
        "by_op": {k: 2 * int(v) for k, v in by_op.items()},
        "by_module": {k: 2 * int(v) for k, v in by_module.items() if k},
        "unsupported": unsupported,
    }
