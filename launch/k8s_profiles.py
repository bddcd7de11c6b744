"""Cluster profiles for `soraplan launch --cluster k8s --profile FILE`: what differs between clusters.

A profile is a small YAML file (see templates/k8s-profile-example.yaml): node placement (nodeSelector,
per-GPU node labels, tolerations, exclusive topology), the GPU resource name, /dev/shm size, CPU/memory
requests, RDMA settings (device resource per rail, networks, NCCL values), extra environment, secrets
(secretKeyRef / envFrom: only names reach the manifest), service account, image pull secrets, priority
class, the TrainJob runtime, the rendezvous port and timeouts, checkpoint storage speed and finished-object
cleanup. Every key is validated once here; a bad one is refused with one line naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from soraplan.planner.errors import UserError

from .k8s_names import check_env_name, check_label_value, check_qualified_name, check_subdomain


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Toleration(_Strict):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = Field(None, ge=0)

    def manifest(self) -> dict:
        return self.model_dump(exclude_none=True)


class Rdma(_Strict):
    mode: Literal["none", "host-network", "device"] = "none"
    resource: str = Field("rdma/ib", description="device plugin resource of the RDMA NICs (both RDMA modes)")
    count: int | None = Field(None, ge=1, description="RDMA devices (rails) per pod; default one per GPU")
    networks: str | tuple[str, ...] | None = Field(
        None, description="Multus networks (mode: device): one per rail, joined into k8s.v1.cni.cncf.io/networks")
    socket_ifname: str | None = Field(None, description="host-network mode: NCCL_SOCKET_IFNAME of the hosts")
    env: dict[str, str] = Field(default_factory=dict, description="NCCL settings for this fabric, e.g. NCCL_IB_HCA")

    @field_validator("resource")
    @classmethod
    def _res(cls, v: str) -> str:
        return check_qualified_name(v, "profile.rdma.resource")

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            check_env_name(k, "profile.rdma.env")
        return {k: str(x) for k, x in v.items()}


class SecretKey(_Strict):
    secret: str = Field(description="Secret name in the run's namespace")
    key: str = Field(description="key inside the Secret")

    @field_validator("secret")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_subdomain(v, "profile.secret_env.secret")


class Profile(_Strict):
    name: str = "default"
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    shm_gib: int = Field(64, ge=1, description="/dev/shm size limit (memory-backed emptyDir)")
    cpu: int | None = Field(None, ge=1, description="CPU request per pod (default: the GPU table's share x GPUs)")
    memory_gib: int | None = Field(None, ge=1, description="process memory per pod; /dev/shm is added on top")
    qos: Literal["guaranteed", "burstable"] = Field(
        "guaranteed", description="guaranteed: CPU limit = request; burstable: no CPU limit (memory limit = request)")
    rdma: Rdma = Rdma()
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, SecretKey] = Field(default_factory=dict, description="env NAME from a Secret's key")
    env_from_secrets: tuple[str, ...] = Field((), description="Secrets whose every key becomes an env variable")
    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    priority_class: str | None = None
    gpu_labels: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="planned GPU (GPU table name) -> node labels that select it")
    exclusive_topology: str | None = Field(None, description="JobSet: one job per domain of this node label key")
    fs_group: int | None = Field(None, ge=0, description="pod fsGroup (a non-root user writing to the PVC)")
    trainjob_runtime: str = Field("torch-distributed", description="ClusterTrainingRuntime for --kind trainjob")
    master_port: int | None = Field(None, ge=1, le=65535,
                                    description="rendezvous port; default 29500, or derived from the run name with host networking")
    rdzv_join_timeout_s: int = Field(1800, ge=60, description="torchrun join_timeout: image pulls + gang scheduling")
    nccl_port_range: tuple[int, int] = Field((40000, 49999), description="pods' ephemeral ports (NCCL), for the NetworkPolicy")
    network_policy: bool = Field(True, description="admit only the run's own pods to the rendezvous and NCCL ports")
    checkpoint_write_gbs: float = Field(1.0, gt=0, description="GB/s the checkpoint storage writes (sizes the grace period)")
    ttl_after_finished_s: int | None = Field(259200, ge=0, description="delete finished objects after this long")
    mount_path: str = Field("/checkpoints", description="where the checkpoint PVC is mounted")

    @field_validator("gpu_resource")
    @classmethod
    def _res(cls, v: str) -> str:
        return check_qualified_name(v, "profile.gpu_resource")

    @field_validator("node_selector")
    @classmethod
    def _sel(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            check_qualified_name(k, "profile.node_selector")
            check_label_value(str(val), f"profile.node_selector[{k}]")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            check_env_name(k, "profile.env")
        return {k: str(x) for k, x in v.items()}

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, v: dict[str, SecretKey]) -> dict[str, SecretKey]:
        for k in v:
            check_env_name(k, "profile.secret_env")
        return v

    @field_validator("env_from_secrets")
    @classmethod
    def _env_from(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for s in v:
            check_subdomain(s, "profile.env_from_secrets")
        return v

    @field_validator("gpu_labels")
    @classmethod
    def _gpu_labels(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for gpu, sel in v.items():
            for k, val in sel.items():
                check_qualified_name(k, f"profile.gpu_labels[{gpu}]")
                check_label_value(str(val), f"profile.gpu_labels[{gpu}][{k}]")
        return {g.lower(): {k: str(x) for k, x in sel.items()} for g, sel in v.items()}

    @field_validator("exclusive_topology")
    @classmethod
    def _topo(cls, v: str | None) -> str | None:
        return v if v is None else check_qualified_name(v, "profile.exclusive_topology")

    @field_validator("nccl_port_range")
    @classmethod
    def _ports(cls, v: tuple[int, int]) -> tuple[int, int]:
        lo, hi = v
        if not 1024 <= lo < hi <= 65535:
            raise ValueError(f"profile.nccl_port_range: {list(v)} must be [low, high] with 1024 <= low < high <= 65535")
        return v

    @field_validator("service_account", "priority_class", "trainjob_runtime")
    @classmethod
    def _sub(cls, v: str | None) -> str | None:
        return v if v is None else check_subdomain(v, "profile")

    @field_validator("image_pull_secrets")
    @classmethod
    def _secrets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for s in v:
            check_subdomain(s, "profile.image_pull_secrets")
        return v

    @field_validator("mount_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/") or ":" in v or any(c.isspace() for c in v):
            raise ValueError(f"profile.mount_path: {v!r} must be an absolute path without spaces or ':'")
        return v.rstrip("/") or "/"


def load_profile(path: Path | str | None) -> Profile:
    """The profile at `path` (defaults when None); one-line UserError for a missing or bad file."""
    if path is None:
        return Profile()
    import yaml

    p = Path(path)
    from soraplan.planner.config import read_text

    try:
        data = yaml.safe_load(read_text(p, "--profile", missing=f"--profile: {p} does not exist")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"--profile: {p} is not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise UserError(f"--profile: {p} must hold a mapping")
    try:
        return Profile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if msg.startswith("profile"):
            raise UserError(f"--profile {p}: {msg}") from None
        raise UserError(f"--profile {p}: profile.{loc}: {msg}") from None
    except UserError as e:
        raise UserError(f"--profile {p}: {e}") from None
