"""Checkpoint size and write time (pure): what a save writes and how long the storage takes to take it.

A checkpoint holds every parameter once (TP/PP shards together make one copy; DP replicas share keys) and
the optimizer state: the fp32 master copy (when the parameters are not fp32) and the optimizer moments, the
same bytes per parameter the memory model counts (`planner/memory.memory_constants`). Gradients are not saved.
The launchers size their stop grace periods from `checkpoint_write_s`.
"""

from __future__ import annotations

from .memory import memory_constants
from .params import total_params
from .spec import Spec


def checkpoint_bytes(spec: Spec) -> int:
    """Bytes of one complete checkpoint of `spec`'s model and optimizer.

    Args:
        spec: the run's Spec.

    Returns:
        total parameters x (parameter bytes + master copy + optimizer states) per parameter.
    """
    c = memory_constants(spec)
    return total_params(spec) * (c.param_bytes + c.optimizer_bytes_per_param)


def checkpoint_write_s(spec: Spec, write_gbs: float) -> float:
    """Seconds to write one checkpoint at an aggregate storage write rate.

    Args:
        spec: the run's Spec.
        write_gbs: GB/s (10^9 bytes) the checkpoint storage sustains for the whole job's writers together.

    Returns:
        checkpoint_bytes / write rate, in seconds.
    """
    if write_gbs <= 0:
        raise ValueError("write_gbs must be positive")
    return checkpoint_bytes(spec) / (write_gbs * 1e9)
