"""CPU shims for megatron-core: applied only when CUDA is absent, idempotent.

megatron-core assumes a GPU in a few places. Measured on megatron-core 0.16.1 / torch 2.13 CPU:
  1. `GlobalMemoryBuffer.get_tensor` (sequence-parallel all-gather buffer, unfused attention's baddbmm
     buffer) allocates on `torch.cuda.current_device()`            -> allocate on CPU.
  2. Many modules pass `device=torch.cuda.current_device()`         -> answer "cpu".
  3. Dropout inside TP regions and `tensor_parallel.checkpoint` use the CUDA RNG tracker and
     `_get/_set_cuda_rng_state`                                    -> a tracker over the CPU generator.
  4. The pipeline schedules count tokens in `torch.zeros(..., device="cuda")`  -> that module sees a
     `torch` whose zeros() maps device "cuda" to CPU.
  5. Sequence parallel needs LayerNorm params marked `sequence_parallel` (torch LayerNorm wrapper refuses
     SP): we use our own `layer.DiTNorm`, which needs no shim.
The default causal mask is built on "cuda" too, but the DiT never uses a causal mask.
On a GPU none of this runs: the same code path uses CUDA, NCCL and the stock tracker.
"""

from __future__ import annotations

import contextlib

_APPLIED = False


def cuda_absent() -> bool:
    import torch

    return not torch.cuda.is_available()


def apply_cpu_shims() -> bool:
    """Patch megatron-core for CPU-only machines. Returns True when the shims are (already) in place."""
    global _APPLIED
    if _APPLIED:
        return True
    if not cuda_absent():
        return False
    import torch
    import megatron.core.tensor_parallel.random as mrandom
    import megatron.core.utils as mutils

    # 2. torch.cuda.current_device() -> "cpu" (used as a `device=` argument throughout megatron)
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]

    # 1. global memory buffer on CPU
    def get_tensor(self, tensor_shape, dtype, name, mem_alloc_context=None):
        import operator
        from functools import reduce

        n = reduce(operator.mul, tensor_shape, 1)
        buf = self.buffer.get((name, dtype))
        if buf is None or buf.numel() < n:
            buf = self.buffer[(name, dtype)] = torch.empty(n, dtype=dtype, device="cpu")
        return buf[0:n].view(*tensor_shape)

    mutils.GlobalMemoryBuffer.get_tensor = get_tensor

    # 3. RNG: the "cuda" RNG state is the CPU generator's state
    def _get_state(device="cuda", clone=False, graph_safe=False):
        return torch.get_rng_state()

    def _set_state(new_state, device=-1, graph_safe=False):
        torch.set_rng_state(new_state)

    mrandom._get_cuda_rng_state = _get_state
    mrandom._set_cuda_rng_state = _set_state

    class CpuRNGStatesTracker(mrandom.CudaRNGStatesTracker):
        """Megatron's tracker (named RNG streams, fork()), over the CPU generator."""

        def add(self, name, seed):
            if seed in self.seeds_:
                raise Exception(f"seed {seed} already exists")
            self.seeds_.add(seed)
            if name in self.states_:
                raise Exception(f"cuda rng state {name} already exists")
            orig = torch.get_rng_state()
            torch.manual_seed(seed)
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(orig)

        @contextlib.contextmanager
        def fork(self, name=mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME):
            if name not in self.states_:
                raise Exception(f"cuda rng state {name} is not added")
            orig = torch.get_rng_state()
            torch.set_rng_state(self.states_[name])
            try:
                yield
            finally:
                self.states_[name] = torch.get_rng_state()
                torch.set_rng_state(orig)

    # 4. pipeline schedules: device="cuda" literals
    import types

    import megatron.core.pipeline_parallel.schedules as schedules

    def zeros(*args, device=None, **kwargs):
        return torch.zeros(*args, device="cpu" if device in ("cuda", None) else device, **kwargs)

    proxy = types.ModuleType("torch_cpu_proxy")
    proxy.__dict__.update({k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
    proxy.zeros = zeros
    schedules.torch = proxy

    mrandom._CUDA_RNG_STATE_TRACKER = CpuRNGStatesTracker()
    mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
    _APPLIED = True
    return True


def seed_model_parallel_rng(seed: int) -> None:
    """Megatron's `model_parallel_cuda_manual_seed` on either device: default stream = seed,
    the TP-region stream = seed + 2718 + tp_rank (so dropout masks differ across TP shards)."""
    import torch
    import megatron.core.tensor_parallel.random as mrandom
    from megatron.core import parallel_state as ps

    if cuda_absent():
        apply_cpu_shims()
        torch.manual_seed(seed)
        tracker = mrandom.get_cuda_rng_tracker()
        tracker.reset()
        tracker.add(mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME, seed + 2718 + ps.get_tensor_model_parallel_rank())
    else:
        torch.manual_seed(seed)
        mrandom.model_parallel_cuda_manual_seed(seed)
