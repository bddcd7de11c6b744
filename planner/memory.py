"""Memory per GPU: weights, grads, optimizer state, activations, buffers; capacity and fits.

bytes/parameter (Megatron mixed precision, Adam): param (bf16: 2) + main grad (fp32: 4) +
master copy (fp32: 4) + 2 Adam moments (fp32: 8) = 18; the distributed optimizer shards the master copy
and the moments over the data-parallel ranks including CP: 6 + 12/(dp*cp). As in Megatron (and
models/zero.py), its parameter and gradient buffers are flat and padded at the end to a multiple of the
g = dp*cp ranks: each rank owns shard = ceil(N/g) elements, the buffers hold g*shard (< g elements more).

`memory_terms` is the formula core, written once for Python scalars (`memory(spec)`, what `soraplan
estimate` prints) and numpy arrays of layouts (`search.Space.evaluate`, what `soraplan plan` ranks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .activations import stage_activations
from .params import params_per_gpu
from .scalar_ops import ScalarOps
from .spec import DTYPE_BYTES, Kernels, Spec

GiB = 1024**3


def master_bytes(k: Kernels) -> int:
    """Bytes per parameter of the fp32 master copy (none when the parameters are fp32 themselves)."""
    return 0 if k.master_dtype == k.param_dtype == "fp32" else DTYPE_BYTES[k.master_dtype]


@dataclass(frozen=True)
class MemoryConstants:
    """The layout-independent part of the memory formula."""

    param_bytes: int                  # per parameter
    grad_bytes: int                   # per parameter
    optimizer_bytes_per_param: int    # master copy + optimizer states, before sharding
    buffers_bytes: float              # CUDA context, NCCL buffers, fragmentation
    capacity_bytes: float             # HBM per GPU


def memory_constants(spec: Spec) -> MemoryConstants:
    k, hw = spec.kernels, spec.hardware
    return MemoryConstants(param_bytes=DTYPE_BYTES[k.param_dtype], grad_bytes=DTYPE_BYTES[k.grad_dtype],
                           optimizer_bytes_per_param=master_bytes(k) + k.optimizer_states * DTYPE_BYTES[k.optimizer_dtype],
                           buffers_bytes=hw.buffer_gib * GiB, capacity_bytes=hw.spec.hbm_gib * GiB)


def optimizer_shard(xp: Any, n_params: Any, dp: Any, cp: Any, distributed_optimizer: Any) -> Any:
    """Parameters whose optimizer state one rank holds: ceil(N / (dp*cp)) with the distributed optimizer
    (its flat buffer padded to a multiple of the dp*cp ranks), else N.

    Args:
        xp: numpy or ScalarOps.
        n_params: parameters per GPU.
        dp, cp: data- and context-parallel sizes.
        distributed_optimizer: whether the optimizer state is sharded.
    Returns:
        Parameters (elements) of this rank's shard.
    """
    return xp.ceil(n_params / xp.where(distributed_optimizer, dp * cp, 1))


def memory_terms(xp: Any, c: MemoryConstants, n_params: Any, dp: Any, cp: Any, distributed_optimizer: Any,
                 activations: Any) -> dict[str, Any]:
    """Bytes per GPU for one layout (scalars, xp=ScalarOps) or many (arrays, xp=numpy).

    Args:
        xp: numpy or ScalarOps.
        c: memory_constants(spec).
        n_params: parameters per GPU.
        dp, cp: data- and context-parallel sizes.
        distributed_optimizer: Megatron's distributed optimizer shards the master copy and the optimizer
            states over the dp*cp ranks that hold the same parameters (CP ranks hold the same parameters).
        activations: saved activation bytes per GPU.

    Returns:
        weights, grads, optimizer, activations, buffers and total, in bytes.
    """
    shard = optimizer_shard(xp, n_params, dp, cp, distributed_optimizer)
    padded = shard * xp.where(distributed_optimizer, dp * cp, 1)      # the flat buffers' padded length
    weights = padded * c.param_bytes
    grads = padded * c.grad_bytes
    optimizer = shard * c.optimizer_bytes_per_param
    total = weights + grads + optimizer + activations + c.buffers_bytes
    return {"weights": weights, "grads": grads, "optimizer": optimizer, "activations": activations,
            "buffers": c.buffers_bytes, "total": total}


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
    """Memory per GPU of the spec's layout."""
    p = spec.parallel
    c = memory_constants(spec)
    t = memory_terms(ScalarOps, c, params_per_gpu(spec), p.dp_size, p.cp, p.distributed_optimizer,
                     stage_activations(spec)["total"])
    return Memory(t["weights"], t["grads"], t["optimizer"], t["activations"], t["buffers"], c.capacity_bytes)
