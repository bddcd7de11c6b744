"""Memory per GPU: weights, grads, optimizer state, activations, buffers; capacity and fits.

bytes/parameter (Megatron mixed precision, Adam): param (bf16: 2) + main grad (fp32: 4) +
master copy (fp32: 4) + 2 Adam moments (fp32: 8) = 18; the distributed optimizer shards the master copy
and the moments over the data-parallel ranks including CP: 6 + 12/(dp*cp).
"""

from __future__ import annotations

from dataclasses import dataclass

from .activations import stage_activations
from .params import params_per_gpu
from .spec import DTYPE_BYTES, Spec

GiB = 1024**3


@dataclass(frozen=True)
class Memory:
    weights: float
    grads: float
    optimizer: float
    activations: float
    buffers: float
    capacity: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations + self.buffers

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    def gib(self) -> dict[str, float | bool]:
        return {"weights": self.weights / GiB, "grads": self.grads / GiB, "optimizer": self.optimizer / GiB,
                "activations": self.activations / GiB, "buffers": self.buffers / GiB, "total": self.total / GiB,
                "capacity": self.capacity / GiB, "fits": self.fits}


def memory(spec: Spec) -> Memory:
    k, p, hw = spec.kernels, spec.parallel, spec.hardware
    n = params_per_gpu(spec)
    weights = n * DTYPE_BYTES[k.param_dtype]
    grads = n * DTYPE_BYTES[k.grad_dtype]
    opt_per_param = DTYPE_BYTES[k.master_dtype] + k.optimizer_states * DTYPE_BYTES[k.optimizer_dtype]
    if k.master_dtype == k.param_dtype and k.param_dtype == "fp32":
        opt_per_param = k.optimizer_states * DTYPE_BYTES[k.optimizer_dtype]  # no separate master copy
    # Megatron shards the distributed optimizer over the data-parallel group with context parallel (dp*cp):
    # CP ranks hold the same parameters.
    optimizer = n * opt_per_param / (p.dp_size * p.cp if p.distributed_optimizer else 1)
    acts = stage_activations(spec)["total"]
    return Memory(weights, grads, optimizer, acts, hw.buffer_gib * GiB, hw.spec.hbm_gib * GiB)
