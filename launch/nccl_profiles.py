"""NCCL environment profiles (data) for `--nccl-profile`, plus the `--debug` bundle's variables.

Pick the profile matching the cluster's fabric; every value is exported in the job before `srun`.
"""

from __future__ import annotations

from soraplan.planner.errors import UserError

# Always set, whatever the profile.
BASE_ENV: dict[str, str] = {
    "PYTHONUNBUFFERED": "1",               # logs reach the %x_%j file as they happen
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",    # Megatron TP/SP comm-compute overlap needs one HW queue
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",  # a dead peer aborts the job instead of hanging it
    "OMP_NUM_THREADS": "1",
}

PROFILES: dict[str, dict[str, str]] = {
    # NCCL's own defaults; only make failures visible.
    "default": {"NCCL_DEBUG": "WARN"},
    # InfiniBand clusters (DGX/HGX with ConnectX): use IB for data, a real interface for bootstrap.
    "infiniband": {"NCCL_DEBUG": "WARN", "NCCL_IB_DISABLE": "0", "NCCL_SOCKET_IFNAME": "^lo,docker0",
                   "NCCL_IB_GID_INDEX": "3", "NCCL_NET_GDR_LEVEL": "PHB"},
    # TCP-only clusters.
    "ethernet": {"NCCL_DEBUG": "WARN", "NCCL_IB_DISABLE": "1", "NCCL_SOCKET_IFNAME": "^lo,docker0",
                 "NCCL_SOCKET_NTHREADS": "4", "NCCL_NSOCKS_PERTHREAD": "4"},
    # AWS p4d/p5 with EFA (aws-ofi-nccl plugin installed).
    "aws-efa": {"NCCL_DEBUG": "WARN", "FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1",
                "NCCL_PROTO": "simple", "NCCL_SOCKET_IFNAME": "^lo,docker0"},
}

# `--debug`: what to turn on when a multi-node job hangs or dies.
DEBUG_ENV: dict[str, str] = {
    "NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,NET,ENV", "TORCH_DISTRIBUTED_DEBUG": "DETAIL",
    "TORCH_SHOW_CPP_STACKTRACES": "1", "PYTHONFAULTHANDLER": "1", "TORCH_CPP_LOG_LEVEL": "INFO",
}


def job_env(profile: str, debug: bool, user_env: dict[str, str] | None = None,
            fabric: dict[str, str] | None = None) -> dict[str, str]:
    """BASE_ENV | profile | fabric | (debug bundle) | the user's `launch.env`, in that order of precedence.

    `fabric` is what a backend knows about the network a job gets (Kubernetes: the RDMA mode's interface
    settings and the cluster profile's NCCL values); Slurm passes none.
    """
    if profile not in PROFILES:
        raise UserError(f"launch.nccl_profile: unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    env = dict(BASE_ENV) | PROFILES[profile] | dict(fabric or {})
    if debug:
        env |= DEBUG_ENV
    return env | dict(user_env or {})
