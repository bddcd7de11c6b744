"""fvcore, with soraplan's handlers, counts Megatron's linear autograd op, baddbmm and SDPA (forward, in
FLOPs = 2 x fvcore's MACs); FlopCounterMode counts CPU flash attention with torch's flash formula."""

import pytest

pytestmark = pytest.mark.megatron


def _module():
    import torch
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
    from megatron.core.transformer import TransformerConfig

    cfg = TransformerConfig(num_layers=1, hidden_size=64, num_attention_heads=4, use_cpu_initialization=True,
                            add_bias_linear=True)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.col = ColumnParallelLinear(64, 128, config=cfg, init_method=cfg.init_method, bias=True,
                                            gather_output=False)
            self.row = RowParallelLinear(128, 32, config=cfg, init_method=cfg.init_method, bias=True,
                                         input_is_parallel=True, skip_bias_add=False)

        def forward(self, x, q):
            y, _ = self.col(x)                                  # [10, 2, 64] x [64, 128]
            z, _ = self.row(y)                                  # [10, 2, 128] x [128, 32]
            a = torch.nn.functional.scaled_dot_product_attention(q, q, q)           # [2, 2, 8, 16]
            s = torch.baddbmm(torch.empty(4, 8, 8), q.flatten(0, 1), q.flatten(0, 1).transpose(1, 2), beta=0.0)
            return z.sum() + a.sum() + s.sum()

    return M()


def test_fvcore_counts_megatron_linear_baddbmm_sdpa(megatron_pg):
    import torch

    from soraplan.validation.fvcore_handlers import fvcore_forward_flops

    x, q = torch.randn(10, 2, 64), torch.randn(2, 2, 8, 16)
    got = fvcore_forward_flops(_module(), (x, q))
    linear = 2 * (20 * 64 * 128 + 20 * 128 * 32)
    sdpa = 2 * (2 * 2 * 8 * 8 * 16 * 2)                    # QK^T + AV per batch x head
    baddbmm = 2 * (4 * 8 * 16 * 8)
    assert got["by_op"]["PythonOp.LinearWithGradAccumulationAndAsyncCommunication"] == linear
    assert got["by_op"]["scaled_dot_product_attention"] == sdpa
    assert got["by_op"]["baddbmm"] == baddbmm
    assert got["forward"] == linear + sdpa + baddbmm
    assert not any("Linear" in k for k in got["unsupported"])


def test_flop_counter_counts_cpu_flash_attention():
    import torch
    import torch.nn.functional as F

    from soraplan.validation.measure import training_flops

    q = torch.randn(2, 4, 32, 16, requires_grad=True)
    m = torch.nn.Identity()
    res = training_flops(m, lambda: F.scaled_dot_product_attention(q, q, q).sum())
    fwd = 2 * 2 * 4 * 32 * 32 * 16 * 2
    assert res["forward"].total == fwd
    assert res["backward"].total == fwd * 5 // 2       # flash backward recomputes QK^T
