"""The Spec's layout -> Slurm allocation (pure): nodes, tasks per node, GPUs, CPUs, memory, time, rendezvous port.

One task per GPU: `srun` starts world-size processes, each reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID
as its rank / world size / local rank. Why not one `torchrun` per node: Slurm then knows every rank (signals,
`--signal=USR2@grace` and `scancel` reach each training process directly, per-task stdout, accounting per
task), there is no second launcher/rendezvous layer to configure, and submitit's multi-task model (one
pickled callable per task, rank 0 requeues) is exactly this layout.

Rendezvous: MASTER_ADDR = first host of `scontrol show hostnames "$SLURM_JOB_NODELIST"`; MASTER_PORT derived
from the job id, MASTER_PORT = PORT_BASE + SLURM_JOB_ID % PORT_SPAN, so two jobs sharing a node do not collide
and a requeued job (same id) finds the same port.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from soraplan.planner.errors import UserError
from soraplan.planner.spec import Spec

PORT_BASE = 15000
PORT_SPAN = 20000


def master_port(job_id: int | str) -> int:
    """MASTER_PORT = PORT_BASE + job_id % PORT_SPAN (array ids like '12_3' use the array's job id)."""
    return PORT_BASE + int(str(job_id).split("_")[0].split(".")[0]) % PORT_SPAN


def port_shell_expr() -> str:
    """The same formula for the sbatch script."""
    return f"$(( {PORT_BASE} + SLURM_JOB_ID % {PORT_SPAN} ))"


@dataclass(frozen=True)
class Allocation:
    world: int              # ranks = GPUs = srun tasks
    nodes: int              # world / gpus_per_node
    tasks_per_node: int     # one task per GPU
    gpus_per_node: int
    cpus_per_task: int
    mem_gib: int | None     # per node; None = the partition's default
    time_min: int
    grace_s: int            # USR2 this many seconds before the time limit

    @property
    def time_str(self) -> str:
        """Slurm --time as D-HH:MM:SS."""
        d, rem = divmod(self.time_min, 24 * 60)
        h, m = divmod(rem, 60)
        return f"{d}-{h:02d}:{m:02d}:00"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"time": self.time_str}


def split_nodes(world: int, gpus_per_node: int) -> tuple[int, int]:
    """(nodes, GPUs per node) for `world` ranks: whole nodes only (a partial node would idle GPUs); a world
    smaller than one node runs on one node with `world` GPUs. Shared by the Slurm and Kubernetes backends."""
    if gpus_per_node < 1:
        raise UserError("launch.gpus_per_node: must be at least 1 (one rank per GPU)")
    if world <= gpus_per_node:
        return 1, world
    if world % gpus_per_node:
        raise UserError(f"launch.gpus_per_node: world size ({world}) % GPUs per node ({gpus_per_node}) != 0; "
                        "choose --gpus or --gpus-per-node so that whole nodes are used")
    return world // gpus_per_node, gpus_per_node


def allocate(spec: Spec, opts: Any) -> Allocation:
    """The allocation for the spec's layout: nodes = world / gpus_per_node (ceil not allowed: a partial node
    would idle GPUs), one task per GPU.

    Args:
        spec: the run's Spec (its parallel section is the layout; its GPU gives the default GPUs per node).
        opts: LaunchOptions (gpus_per_node, cpus_per_task, mem_gib, time_min, grace_s).

    Returns:
        The Allocation.
    """
    world = spec.parallel.world
    gpn = opts.gpus_per_node if opts.gpus_per_node is not None else spec.hardware.spec.gpus_per_node
    nodes, per_node = split_nodes(world, gpn)
    if opts.grace_s >= opts.time_min * 60:
        raise UserError(f"launch.grace_s: the checkpoint signal ({opts.grace_s} s before the limit) must come after "
                        f"the start: raise --time-min ({opts.time_min} min) or lower grace_s")
    return Allocation(world=world, nodes=nodes, tasks_per_node=per_node, gpus_per_node=per_node,
                      cpus_per_task=opts.cpus_per_task, mem_gib=opts.mem_gib, time_min=opts.time_min,
                      grace_s=opts.grace_s)
