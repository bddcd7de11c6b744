"""LaunchOptions: everything `soraplan launch` needs besides the Spec, validated once.

Built from the YAML's `launch:` section overlaid with CLI flags. Values that reach a shell script or a
Kubernetes manifest are validated here first (names) and quoted again by the renderers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from soraplan.planner.config import format_validation_error
from soraplan.planner.errors import UserError

from soraplan.planner.names import RUN_NAME, matches, shown


class LaunchOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster: Literal["slurm", "k8s"] = "slurm"
    name: str = "soraplan-run"
    run_root: Path = Path("runs")              # run directory = run_root / name
    dry_run: bool = False
    resume: bool = False
    force: bool = False
    debug: bool = False
    steps: int | None = Field(None, ge=1)
    tiny: bool = False
    save_every: int | None = Field(None, ge=1)
    train_args: tuple[str, ...] = ()            # extra arguments appended to `soraplan train`
    env: dict[str, str] = Field(default_factory=dict)
    # --- Slurm ---
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = Field(60, ge=1)
    mem_gib: int | None = Field(None, ge=1)
    cpus_per_task: int = Field(8, ge=1)
    gpus_per_node: int | None = Field(None, ge=0, description="default: the GPU table's gpus_per_node")
    max_retries: int = Field(3, ge=0)
    nccl_profile: str = "default"
    python: str = "python3"
    grace_s: int = Field(120, ge=10, description="USR2 this many seconds before the time limit")
    # --- Kubernetes ---
    image: str | None = None
    kind: Literal["jobset", "pytorchjob", "trainjob", "indexed-job"] = "jobset"
    namespace: str = "default"
    profile: Path | None = None                 # cluster profile YAML (tolerations, nodeSelector, rdma, ...)
    server_dry_run: bool = False
    queue: str | None = None                    # Kueue LocalQueue name
    rdma: Literal["none", "host-network", "device"] = "none"
    pvc: str | None = None                      # checkpoint PersistentVolumeClaim
    output_dir: Path | None = None              # --dry-run: write one YAML file per object here
    ephemeral: bool = False                     # multi-node without --pvc: checkpoints live and die with the pods
    pod_security: Literal["privileged", "baseline", "restricted"] = "privileged"   # Pod Security level to fit

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not matches(RUN_NAME, v):
            raise ValueError(f"launch.name: {shown(v)} is not a valid run name ({RUN_NAME.words})")
        return v

    def train_flags(self) -> list[str]:
        """The `soraplan train` flags every backend passes from these options (steps, tiny, save cadence)."""
        flags: list[str] = []
        if self.steps is not None:
            flags += ["--steps", str(self.steps)]
        if self.tiny:
            flags.append("--tiny")
        if self.save_every is not None:
            flags += ["--save-every", str(self.save_every)]
        return flags

    @property
    def run_dir(self) -> Path:
        return (self.run_root / self.name).resolve()


def default_run_name(spec_name: str) -> str:
    """The spec's name made run-name safe: "DiT-XL/2" -> "DiT-XL-2" (at most 63 characters, else "run")."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", spec_name).lstrip("._-")[:63] or "run"


def build_options(spec_name: str, yaml_section: Any, flags: dict[str, Any], name: str | None = None) -> LaunchOptions:
    """LaunchOptions = the YAML's `launch:` section overlaid with the CLI flags that were given.

    Args:
        spec_name: the Spec's name; the default run name is derived from it.
        yaml_section: the YAML's `launch:` section (None when absent; must be a mapping).
        flags: CLI values by LaunchOptions field; None, False and () mean "not given" and do not overlay.
        name: the run name given on the command line (`--name`), which wins over the YAML.

    Returns:
        The validated, frozen options. Bad values raise UserError naming the `launch.<field>`.
    """
    section = yaml_section or {}
    if not isinstance(section, dict):
        raise UserError("launch: the YAML 'launch' section must be a mapping")
    data = dict(section)
    data.update({k: v for k, v in flags.items() if v is not None and v != () and v is not False})
    if name:
        data["name"] = name
    if "name" not in data:
        data["name"] = default_run_name(spec_name)
    try:
        return LaunchOptions.model_validate(data)
    except ValidationError as e:
        msg = format_validation_error(e)
        raise UserError(msg if msg.startswith("launch.") else f"launch.{msg}") from None
