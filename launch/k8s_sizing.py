"""Numbers a Kubernetes pod of a run needs, from the plan and the cluster profile (pure).

- requests/limits: GPUs, RDMA rails, CPU and memory. CPU and memory come from the profile, else from the
  GPU table's per-GPU host share (`planner/hardware.host_share`) times the GPUs of the pod. The memory-backed
  /dev/shm counts against the pod's memory cgroup, so `shm_gib` is added to the memory request. Memory
  limit = request; CPU limit = request under `qos: guaranteed` (the pod is Guaranteed), none under
  `qos: burstable`. A pod is never BestEffort.
- the rendezvous port: the profile's, else 29500 in the pod's own network namespace; with host networking
  two jobs can share a node, so the port is derived from the run name (like Slurm's from the job id).
- the stop timing: after SIGTERM the trainer finishes its step and writes a checkpoint. torchrun's shutdown
  timeout (how long it waits for its workers before SIGKILL, 30 s by default) and the pod's
  terminationGracePeriodSeconds are sized from the planner's step time and checkpoint write time
  (checkpoint bytes / the profile's `checkpoint_write_gbs`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from soraplan.planner.checkpoint import checkpoint_bytes
from soraplan.planner.hardware import host_share
from soraplan.planner.spec import Spec
from soraplan.planner.step import step_time

from .k8s_profiles import Profile

DEFAULT_PORT = 29500
HOST_PORT_BASE = 20000      # host networking: port = base + sha256(object name) % span
HOST_PORT_SPAN = 10000
STOP_MARGIN_S = 30          # process exit, NCCL teardown, filesystem flush after the checkpoint
WRITE_SLACK = 1.5           # the storage's rate is a typical, not a worst case


def rdzv_port(profile: Profile, name: str, host_network: bool) -> int:
    """The c10d rendezvous port of the run `name` (object name)."""
    if profile.master_port is not None:
        return profile.master_port
    if not host_network:
        return DEFAULT_PORT
    return HOST_PORT_BASE + int(hashlib.sha256(name.encode()).hexdigest(), 16) % HOST_PORT_SPAN


def rdma_count(profile: Profile, gpus_per_node: int) -> int:
    """RDMA devices (rails) per pod: the profile's count, else one per GPU."""
    return profile.rdma.count if profile.rdma.count is not None else gpus_per_node


def pod_resources(profile: Profile, gpu_name: str, gpus_per_node: int, rdma: str) -> dict[str, dict[str, str]]:
    """{"requests": ..., "limits": ...} of one pod (quantities as strings, the API's canonical form).

    Args:
        profile: the cluster profile.
        gpu_name: the planned GPU's table name (its host share is the default).
        gpus_per_node: GPUs of the pod.
        rdma: the RDMA mode ("none", "host-network", "device").

    Returns:
        requests and limits; never empty of CPU and memory.
    """
    share = host_share(gpu_name)
    cpu = profile.cpu if profile.cpu is not None else share.cpus_per_gpu * gpus_per_node
    mem_gib = (profile.memory_gib if profile.memory_gib is not None else share.mem_gib_per_gpu * gpus_per_node)
    mem_gib += profile.shm_gib
    devices = {profile.gpu_resource: str(gpus_per_node)}
    if rdma != "none":
        devices[profile.rdma.resource] = str(rdma_count(profile, gpus_per_node))
    requests = {**devices, "cpu": str(cpu), "memory": f"{mem_gib}Gi"}
    limits = {**devices, "memory": f"{mem_gib}Gi"}
    if profile.qos == "guaranteed":
        limits["cpu"] = str(cpu)
    return {"requests": requests, "limits": limits}


@dataclass(frozen=True)
class StopTiming:
    """How long a stop may take: step + checkpoint write, in seconds."""

    step_s: float
    checkpoint_bytes: int
    write_s: float
    shutdown_timeout_s: int    # torchrun: SIGTERM to its workers -> SIGKILL after this long
    grace_s: int               # pod: SIGTERM -> SIGKILL after this long (> shutdown_timeout_s)


def stop_timing(spec: Spec, profile: Profile, floor_s: int) -> StopTiming:
    """The stop timing of `spec` on the profile's checkpoint storage.

    Args:
        spec: the run's Spec (its step time and checkpoint size come from the planner).
        profile: the cluster profile (`checkpoint_write_gbs`).
        floor_s: the smallest grace period to give (`launch.grace_s`).

    Returns:
        StopTiming; shutdown = ceil(step + 1.5 x write) + 30 s, grace = max(floor, shutdown + 30 s).
    """
    step_s = step_time(spec).time_s
    nbytes = checkpoint_bytes(spec)
    write_s = nbytes / (profile.checkpoint_write_gbs * 1e9)
    shutdown = math.ceil(step_s + WRITE_SLACK * write_s) + STOP_MARGIN_S
    return StopTiming(step_s=step_s, checkpoint_bytes=nbytes, write_s=write_s, shutdown_timeout_s=shutdown,
                      grace_s=max(floor_s, shutdown + STOP_MARGIN_S))
