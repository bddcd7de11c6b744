"""Cluster profiles for `soraplan launch --cluster k8s --profile FILE`: what differs between clusters.

A profile is a small YAML file (see templates/k8s-profile-example.yaml): node placement (nodeSelector,
tolerations), the GPU resource name, /dev/shm size, CPU/memory requests, RDMA settings, extra environment
(NCCL), service account, image pull secrets, priority class, and the TrainJob runtime. Every key is
validated once here; a bad one is refused with one line naming it.
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
    resource: str = Field("rdma/ib", description="device plugin resource of the RDMA NICs (mode: device)")
    count: int = Field(1, ge=1, description="RDMA devices per pod (mode: device)")
    networks: str | None = Field(None, description="Multus annotation k8s.v1.cni.cncf.io/networks (mode: device)")
    env: dict[str, str] = Field(default_factory=dict, description="NCCL settings for this fabric, e.g. NCCL_IB_HCA")


class Profile(_Strict):
    name: str = "default"
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    shm_gib: int = Field(64, ge=1, description="/dev/shm size limit (memory-backed emptyDir)")
    cpu: int | None = Field(None, ge=1, description="CPU request = limit per pod")
    memory_gib: int | None = Field(None, ge=1, description="memory request = limit per pod")
    rdma: Rdma = Rdma()
    env: dict[str, str] = Field(default_factory=dict)
    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    priority_class: str | None = None
    trainjob_runtime: str = Field("torch-distributed", description="ClusterTrainingRuntime for --kind trainjob")
    master_port: int = Field(29500, ge=1, le=65535)
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
