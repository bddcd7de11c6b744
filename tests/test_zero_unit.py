"""models/zero.py on one process: the flat buffers, the padding, a bf16 model's fp32 master copy, and one
step equal to torch's AdamW on the same gradients."""

import pytest

pytestmark = pytest.mark.megatron


def _params(dtype):
    import torch

    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(3, 5, generator=g).to(dtype)), torch.nn.Parameter(torch.randn(7, generator=g).to(dtype))]


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_one_step_equals_adamw(megatron_pg, dtype_name):
    import torch
    import torch.distributed as dist

    from soraplan.models.zero import FlatDistributedOptimizer

    dtype = getattr(torch, dtype_name)
    ref = [torch.nn.Parameter(p.detach().float().clone()) for p in _params(dtype)]
    ps = _params(dtype)
    opt = FlatDistributedOptimizer(ps, dist.group.WORLD, lr=1e-2)
    assert opt.numel == 22 and opt.shard == 22 and opt.padded == 22
    assert all(p.data.data_ptr() >= opt.param_buffer.data_ptr() for p in ps)     # views of the flat buffer
    grads = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i + 1)) for i, p in enumerate(ps)]
    for p, gr in zip(ps, grads):
        p.grad.add_(gr.to(dtype))                       # .grad is the buffer's view: accumulate in place
    ps[1].grad = grads[1].to(dtype).clone()             # a replaced .grad is copied back into the buffer
    opt.step()
    adam = torch.optim.AdamW(ref, lr=1e-2, weight_decay=0.0)
    for p, gr in zip(ref, grads):
        p.grad = gr.to(dtype).float()
    adam.step()
    for p, r in zip(ps, ref):
        assert torch.equal(p.detach(), r.detach().to(dtype))
    # state: 2 fp32 moments of the shard, + an fp32 master copy when the parameters are not fp32
    assert opt.state_bytes() == 22 * 8 + (0 if dtype == torch.float32 else 22 * 4)
    opt.zero_grad()
    assert all(float(p.grad.abs().sum()) == 0 for p in ps)


def test_shard_size_pads_to_the_group():
    from soraplan.models.zero import shard_size

    assert [shard_size(n, 3) for n in (9, 10, 11, 12)] == [3, 4, 4, 4]


def test_bf16_parameters_reduce_fp32_main_grads(megatron_pg):
    """grad_dtype=float32 under bf16 parameters (the spec's fp32 main grads): the gradient buffer is fp32,
    .grad stays autograd's bf16 tensor and is cast into the buffer at the step; one step equals AdamW."""
    import torch
    import torch.distributed as dist

    from soraplan.models.zero import FlatDistributedOptimizer

    ref = [torch.nn.Parameter(p.detach().float().clone()) for p in _params(torch.bfloat16)]
    ps = _params(torch.bfloat16)
    opt = FlatDistributedOptimizer(ps, dist.group.WORLD, lr=1e-2, grad_dtype=torch.float32)
    assert opt.grad_buffer.dtype == torch.float32 and all(p.grad is None for p in ps)
    grads = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i + 1)) for i, p in enumerate(ps)]
    for p, gr in zip(ps, grads):
        p.grad = gr.to(torch.bfloat16)
    opt.step()
    assert torch.equal(opt.grad_buffer[:15], grads[0].to(torch.bfloat16).float().reshape(-1))
    adam = torch.optim.AdamW(ref, lr=1e-2, weight_decay=0.0)
    for p, gr in zip(ref, grads):
        p.grad = gr.to(torch.bfloat16).float()
    adam.step()
    for p, r in zip(ps, ref):
        assert torch.equal(p.detach(), r.detach().to(torch.bfloat16))
    assert opt.state_bytes() == 22 * 12
    opt.zero_grad()
    assert all(p.grad is None for p in ps) and float(opt.grad_buffer.abs().sum()) == 0
