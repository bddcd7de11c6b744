"""torch.distributed + megatron parallel_state from the environment (torchrun, srun or nothing).

`initialize()` reads torchrun's RANK/WORLD_SIZE/LOCAL_RANK, else Slurm's SLURM_PROCID/SLURM_NTASKS/
SLURM_LOCALID (with MASTER_ADDR/MASTER_PORT), else starts a one-process gloo group. Backend: nccl when
CUDA is present, gloo otherwise. Safe to call twice; a different layout re-initialises parallel_state.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world: int
    local_rank: int
    launched: bool    # True under torchrun/srun, False for a plain single process


def dist_env(environ: dict[str, str] | None = None) -> DistEnv:
    """Rank/world/local rank from torchrun's variables, else Slurm's, else a single process."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), True)
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return DistEnv(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)), True)
    return DistEnv(0, 1, 0, False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init_process_group(backend: str | None) -> None:
    import datetime

    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    e = dist_env()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    # under a launcher, env:// even for one process: torchrun's agent store answers there (a private tcp://
    # port would wait for it); a one-task srun without MASTER_ADDR takes the private port
    if e.launched and (e.world > 1 or "MASTER_ADDR" in os.environ):
        if "MASTER_ADDR" not in os.environ:
            raise RuntimeError("MASTER_ADDR is not set: export MASTER_ADDR/MASTER_PORT (the first node) before srun")
        os.environ.setdefault("MASTER_PORT", "29500")
        os.environ["RANK"], os.environ["WORLD_SIZE"] = str(e.rank), str(e.world)
        os.environ["LOCAL_RANK"] = str(e.local_rank)
        if backend == "nccl":
            torch.cuda.set_device(e.local_rank)
        dist.init_process_group(backend, init_method="env://", rank=e.rank, world_size=e.world,
                                timeout=datetime.timedelta(minutes=30))
    else:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)


_LAYOUT: tuple[int, int, int, int] | None = None


def initialize(spec=None, tp: int = 1, pp: int = 1, cp: int = 1, backend: str | None = None, vpp: int = 1) -> None:
    """torch.distributed (env:// or a 1-process gloo group) + megatron parallel_state (tp, pp, cp, and vpp
    model chunks per pipeline rank for the interleaved schedule).

    With `spec`, the sizes come from spec.parallel. Calling again with the same layout is a no-op.
    """
    global _LAYOUT
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from .shims import apply_cpu_shims, cuda_absent

    if spec is not None:
        tp, pp, cp, vpp = spec.parallel.tp, spec.parallel.pp, spec.parallel.cp, spec.parallel.vpp
    if cuda_absent():
        apply_cpu_shims()
    _init_process_group(backend)
    world = dist.get_world_size()
    if world % (tp * pp * cp):
        raise RuntimeError(f"world size {world} is not divisible by tp*pp*cp = {tp * pp * cp}")
    if ps.model_parallel_is_initialized() and _LAYOUT == (tp, pp, cp, vpp):
        return
    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    ps.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                                 virtual_pipeline_model_parallel_size=vpp if vpp > 1 else None,
                                 context_parallel_size=cp)
    _LAYOUT = (tp, pp, cp, vpp)
    _default_rng_streams()


def _default_rng_streams() -> None:
    """Megatron forks the TP-region RNG stream even without dropout: make sure it exists (build_model and
    the trainer reseed it properly)."""
    import megatron.core.tensor_parallel.random as mrandom
    from megatron.core import parallel_state as ps

    tracker = mrandom.get_cuda_rng_tracker()
    name = mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME
    if name not in tracker.get_states():
        tracker.add(name, 1234 + 2718 + ps.get_tensor_model_parallel_rank())


def comm_device():
    """Where small control tensors (flags, losses) must live for collectives: CUDA under nccl, else CPU."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def destroy() -> None:
    """Tear down parallel_state and the process group (both optional)."""
    global _LAYOUT
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
    _LAYOUT = None
