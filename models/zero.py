"""The distributed optimizer as Megatron-core does it (ZeRO-1 over one flat buffer), in plain collectives
that run on gloo and nccl alike; `soraplan.planner.memory` and `soraplan.planner.comm` price exactly this.

  buffers   every trainable parameter becomes a view of one contiguous parameter buffer, and its
            gradient a view of one contiguous gradient buffer (same order, same offsets), each padded at
            the end to a multiple of the group size g: shard = ceil(N / g) elements per rank, padded = g·shard.
            The gradient buffer holds `grad_dtype` (the spec's: fp32 main grads, as Megatron keeps for
            bf16 parameters); when that is not the parameters' dtype, .grad stays autograd's own tensor
            and is cast into the buffer before the reduction
  shard     rank r of the group owns elements [r·shard, (r+1)·shard) of both buffers
  step      reduce_scatter_tensor of the whole gradient buffer (sum) over the group into this rank's
            gradient shard, scaled by `grad_scale` (1/dp: the data-parallel mean; CP ranks' gradients are
            summed) -> AdamW on the shard, with fp32 moments and an fp32 master copy when the parameters
            are not fp32 themselves (fp32 parameters are their own master, as in Megatron) ->
            all_gather_into_tensor of the updated shard into the parameter buffer
  group     the data-parallel group with context parallel (dp·cp ranks hold the same parameters)

`state_bytes()` is the optimizer state this rank holds (master copy + moments of its shard; the step
counter, one scalar, aside). `checkpoint_state(tag)` / `ensure_state()` feed models/checkpoint.py: one
key per shard, so each rank saves and loads its own.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.distributed as dist


def shard_size(numel: int, group_size: int) -> int:
    """Elements per rank of a buffer of `numel` elements padded to a multiple of `group_size`."""
    return -(-numel // group_size)


class FlatDistributedOptimizer:
    """AdamW sharded over `group` on flat parameter and gradient buffers (module docstring).

    Args:
        params: the model's parameters (those without requires_grad are left alone).
        group: the process group the state is sharded over (dp·cp ranks).
        grad_scale: factor applied to the summed gradient shard (1/dp).
        grad_dtype: dtype of the gradient buffer and its reduction (default: the parameters').
        lr, betas, eps, weight_decay: AdamW's hyper-parameters.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], group: Any, grad_scale: float = 1.0,
                 lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, grad_dtype: torch.dtype | None = None) -> None:
        seen: set[int] = set()
        self.params = [p for p in params if p.requires_grad and not (id(p) in seen or seen.add(id(p)))]
        if not self.params:
            raise ValueError("FlatDistributedOptimizer: no trainable parameters")
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) != 1:
            raise ValueError(f"FlatDistributedOptimizer: one parameter dtype expected, got {sorted(map(str, dtypes))}")
        self.group, self.grad_scale = group, grad_scale
        self.size, self.rank = dist.get_world_size(group), dist.get_rank(group)
        self.numel = sum(p.numel() for p in self.params)
        self.shard = shard_size(self.numel, self.size)
        self.padded = self.shard * self.size
        dtype, device = self.params[0].dtype, self.params[0].device
        self.param_buffer = torch.zeros(self.padded, dtype=dtype, device=device)
        self.grad_buffer = torch.zeros(self.padded, dtype=dtype if grad_dtype is None else grad_dtype, device=device)
        self.grad_views = self.grad_buffer.dtype == dtype       # else .grad is cast into the buffer at the step
        self.offsets: list[int] = []
        off = 0
        with torch.no_grad():
            for p in self.params:
                n = p.numel()
                self.param_buffer[off:off + n].copy_(p.data.reshape(-1))
                p.data = self.param_buffer[off:off + n].view_as(p)
                self.offsets.append(off)
                off += n
        lo = self.rank * self.shard
        self.param_shard = self.param_buffer[lo:lo + self.shard]
        self.grad_shard = self.grad_buffer[lo:lo + self.shard]
        # the leaf AdamW updates: fp32 parameters are their own master copy
        if dtype == torch.float32:
            self.master = self.param_shard
            self.separate_master = False
        else:
            self.master = self.param_shard.detach().float().clone()
            self.separate_master = True
        self.optim = torch.optim.AdamW([self.master], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.zero_grad()

    # ------------------------------------------------------------------ gradients
    def _grad_view(self, i: int) -> torch.Tensor:
        p, off = self.params[i], self.offsets[i]
        return self.grad_buffer[off:off + p.numel()].view_as(p)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradient buffer; every parameter's .grad is its view of it (backward accumulates there),
        or None when the buffer's dtype differs from the parameters'."""
        self.grad_buffer.zero_()
        for i, p in enumerate(self.params):
            p.grad = self._grad_view(i) if self.grad_views else None

    def _gather_grads(self) -> None:
        """Put any .grad that autograd replaced instead of accumulating in place back into the buffer (every
        .grad, cast, when the buffer's dtype differs from the parameters')."""
        if not self.grad_views:
            for i, p in enumerate(self.params):
                view = self._grad_view(i)
                if p.grad is None:
                    view.zero_()
                else:
                    view.copy_(p.grad)
            return
        lo, hi = self.grad_buffer.data_ptr(), self.grad_buffer.data_ptr() + self.padded * self.grad_buffer.element_size()
        for i, p in enumerate(self.params):
            g = p.grad
            view = self._grad_view(i)
            if g is None:
                view.zero_()
            elif not (lo <= g.data_ptr() < hi and g.data_ptr() == view.data_ptr()):
                view.copy_(g)
            p.grad = view

    # ------------------------------------------------------------------ the step
    def step(self) -> None:
        """reduce_scatter_tensor of the gradients -> AdamW on this rank's shard -> all_gather_into_tensor."""
        self._gather_grads()
        dist.reduce_scatter_tensor(self.grad_shard, self.grad_buffer, group=self.group)
        if self.grad_scale != 1.0:
            self.grad_shard.mul_(self.grad_scale)
        self.master.grad = self.grad_shard if not self.separate_master else self.grad_shard.float()
        with torch.no_grad():
            self.optim.step()
            if self.separate_master:
                self.param_shard.copy_(self.master)
        dist.all_gather_into_tensor(self.param_buffer, self.param_shard, group=self.group)

    # ------------------------------------------------------------------ state
    def ensure_state(self) -> None:
        """Materialise AdamW's state (zeros) so a fresh optimizer has the keys a checkpoint loads into."""
        st = self.optim.state[self.master]
        if not st:
            st["step"] = torch.tensor(0.0)
            st["exp_avg"] = torch.zeros_like(self.master)
            st["exp_avg_sq"] = torch.zeros_like(self.master)

    def state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds: the moments of its shard, + the fp32 master copy when
        the parameters are not fp32 (AdamW's step counter, one scalar, is not counted)."""
        st = self.optim.state.get(self.master, {})
        moments = sum(v.numel() * v.element_size() for k, v in st.items()
                      if k != "step" and torch.is_tensor(v))
        return moments + (self.master.numel() * self.master.element_size() if self.separate_master else 0)

    def checkpoint_state(self, tag: str) -> dict[str, torch.Tensor]:
        """This rank's shard of the optimizer state under keys naming the shard (loaded in place)."""
        self.ensure_state()
        key = f"opt.{tag}.zero{self.rank}of{self.size}"
        st = self.optim.state[self.master]
        out = {f"{key}.{k}": st[k] for k in ("exp_avg", "exp_avg_sq", "step")}
        if self.separate_master:
            out[f"{key}.master"] = self.master
        return out

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optim.param_groups


def build_optimizer(model: torch.nn.Module, spec, lr: float) -> tuple[Any, bool]:
    """The trainer's optimizer for `spec`'s layout (collective when sharded: every rank of the group calls it).

    Args:
        model: this rank's module (its parameters become views of the flat buffer when sharded).
        spec: the run's spec (parallel.distributed_optimizer; kernels.grad_dtype: the gradient buffer's).
        lr: the learning rate.
    Returns:
        (optimizer, sharded): FlatDistributedOptimizer over the dp·cp group with the distributed optimizer
        and dp·cp > 1, else torch's AdamW (state replicated; the gradients are all-reduced first).
    """
    from megatron.core import parallel_state as ps

    dp, cp = ps.get_data_parallel_world_size(), ps.get_context_parallel_world_size()
    if spec.parallel.distributed_optimizer and dp * cp > 1:
        from .config import torch_dtype

        return FlatDistributedOptimizer(model.parameters(), ps.get_data_parallel_group(with_context_parallel=True),
                                        grad_scale=1.0 / dp, lr=lr, weight_decay=0.0,
                                        grad_dtype=torch_dtype(spec.kernels.grad_dtype)), True
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0), False


def state_bytes(optimizer) -> int:
    """Optimizer state bytes this rank holds: the distributed optimizer's `state_bytes()`, or the moments
    (and any master copy) torch's AdamW keeps per parameter (step counters aside)."""
    if isinstance(optimizer, FlatDistributedOptimizer):
        return optimizer.state_bytes()
    return sum(v.numel() * v.element_size() for st in optimizer.state.values() for k, v in st.items()
               if k != "step" and torch.is_tensor(v))
