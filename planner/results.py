"""Typed planner results: what `plan`, the budget and `estimate` return, each with `.to_json()`.

`to_json()` is the JSON contract (`soraplan plan --json`, `soraplan estimate --json`, the report's input):
field order is key order, nested results become nested objects, and a field whose metadata says `omit_none`
is left out while it is None (keys that appear only in some rows, e.g. `message` of an infeasible GPU count).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

OMIT = {"omit_none": True}


def to_json_value(x: Any) -> Any:
    """Dataclasses -> dicts (in field order), pydantic models -> their JSON dump, tuples -> lists."""
    if is_dataclass(x) and not isinstance(x, type):
        out: dict[str, Any] = {}
        for f in fields(x):
            v = getattr(x, f.name)
            if v is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = to_json_value(v)
        return out
    if hasattr(x, "model_dump"):
        return x.model_dump(mode="json")
    if isinstance(x, (list, tuple)):
        return [to_json_value(v) for v in x]
    if isinstance(x, dict):
        return {k: to_json_value(v) for k, v in x.items()}
    return x


class JsonResult:
    """`.to_json()` for the result dataclasses."""

    def to_json(self) -> dict[str, Any]:
        out = to_json_value(self)
        assert isinstance(out, dict)
        return out


# ------------------------------------------------------------------------------------------------ layouts
@dataclass(frozen=True)
class Layout(JsonResult):
    """One parallel layout: Megatron's sizes and switches."""

    tp: int
    pp: int
    vpp: int
    cp: int
    dp: int
    micro_batch: int
    microbatches: int
    global_batch: int | None
    sequence_parallel: bool
    recompute: str
    distributed_optimizer: bool
    attention: str
    cp_comm: str = field(default="p2p", kw_only=True)   # context-parallel K/V exchange (planner.cp.CP_COMMS), cp > 1

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Layout:
        """The layout part of a ranked layout's JSON; missing keys: size 1, no global batch, switches off,
        no recompute, full attention."""
        kw: dict[str, Any] = {"tp": 1, "pp": 1, "vpp": 1, "cp": 1, "dp": 1, "micro_batch": 1, "microbatches": 1,
                              "global_batch": None, "sequence_parallel": False, "recompute": "none",
                              "distributed_optimizer": False, "attention": "full", "cp_comm": "p2p"}
        kw.update({f.name: d[f.name] for f in fields(Layout) if d.get(f.name) is not None})
        return Layout(**kw)

    @property
    def model_parallel(self) -> int:
        """GPUs of one model replica: tp * pp * cp."""
        return self.tp * self.pp * self.cp


@dataclass(frozen=True)
class LayoutMemory(JsonResult):
    """Memory per GPU of one layout, in GiB."""

    weights: float
    grads: float
    optimizer: float
    activations: float
    buffers: float
    total: float
    capacity: float
    usable: float        # capacity less the search's headroom
    fits: bool


@dataclass(frozen=True)
class LayoutStep(JsonResult):
    """Every step-time term of one layout (seconds per optimizer step unless named otherwise)."""

    compute_s: float
    gemm_s: float
    attention_s: float
    elementwise_s: float
    recompute_s: float
    tp_comm_s: float
    cp_comm_s: float
    cp_comm_total_s: float
    dp_comm_s: float
    dp_comm_total_s: float
    pp_bubble_s: float
    pp_p2p_s: float
    optimizer_s: float
    efficiency: float
    mfu: float
    samples_per_step: int
    time_s: float
    samples_per_s: float
    overhead_s: float = 0.0      # launch gaps, data loading, optimizer launches, stragglers

    def term(self, name: str) -> float:
        """A term by its JSON name (the STEP_FIELDS), for tables that iterate over terms."""
        return float(getattr(self, name))


@dataclass(frozen=True)
class LayoutTrain(JsonResult):
    """Training the samples on one layout."""

    samples: float
    steps: int
    days: float
    gpu_hours: float
    cost_usd: float


@dataclass(frozen=True)
class RankedLayout(Layout):
    """A layout that fits, with its memory, step terms and training time."""

    global_batch: int                # always known once ranked (keeps its place among the Layout fields)
    gpus_used: int
    memory_gib: LayoutMemory
    step: LayoutStep
    train: LayoutTrain

    @property
    def layout(self) -> Layout:
        return Layout(**{f.name: getattr(self, f.name) for f in fields(Layout)})


@dataclass(frozen=True)
class BestLayout(RankedLayout):
    """The recommended layout: a ranked layout and the GPU count it was searched for."""

    gpus: int


@dataclass(frozen=True)
class CountSearch(JsonResult):
    """The search for one GPU count: how many layouts, how many fit, why the rest failed, the best few."""

    gpus: int
    evaluated: int
    feasible: int
    rejected: dict[str, int]
    ranked: tuple[RankedLayout, ...]
    why_best: str
    message: str | None = field(default=None, metadata=OMIT)     # only when nothing fits


@dataclass(frozen=True)
class SearchSummary(JsonResult):
    """The settings the search ran with."""

    headroom: float
    max_tp_in_node: int
    global_batch_range: tuple[int, int]
    attentions: tuple[str, ...]
    samples: float
    efficiency: dict[str, Any]


# ------------------------------------------------------------------------------------------------- budget
@dataclass(frozen=True)
class StageRow(JsonResult):
    """One curriculum stage on one GPU count (only `gpus`, `feasible`, `message` when nothing fits)."""

    gpus: int
    feasible: bool
    message: str | None = field(default=None, metadata=OMIT)
    layout: str | None = field(default=None, metadata=OMIT)
    gpus_used: int | None = field(default=None, metadata=OMIT)
    days: float | None = field(default=None, metadata=OMIT)
    gpu_hours: float | None = field(default=None, metadata=OMIT)
    cost_usd: float | None = field(default=None, metadata=OMIT)
    mfu: float | None = field(default=None, metadata=OMIT)
    step_s: float | None = field(default=None, metadata=OMIT)
    samples_per_s: float | None = field(default=None, metadata=OMIT)
    memory_gib: float | None = field(default=None, metadata=OMIT)
    read_mb_s_per_gpu_latent: float | None = field(default=None, metadata=OMIT)
    read_mb_s_per_gpu_raw: float | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True)
class StageBudget(JsonResult):
    name: str
    geometry: str
    sequence_length: int
    samples: float
    dataset: str | None
    storage: dict[str, Any]          # latent_bytes, raw_bytes, raw_source
    per_gpus: tuple[StageRow, ...]


@dataclass(frozen=True)
class CountTotal(JsonResult):
    gpus: int
    days: float
    gpu_hours: float
    cost_usd: float
    feasible: bool


@dataclass(frozen=True)
class PassRow(JsonResult):
    """Passes over the main spec's samples in 60 and 90 days on one GPU count."""

    gpus: int
    feasible: bool
    days_per_pass: float | None = field(default=None, metadata=OMIT)
    passes_in_60_days: float | None = field(default=None, metadata=OMIT)
    passes_in_90_days: float | None = field(default=None, metadata=OMIT)
    mfu: float | None = field(default=None, metadata=OMIT)
    layout: str | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True)
class Budget(JsonResult):
    curriculum: bool
    stages: tuple[StageBudget, ...]
    totals: tuple[CountTotal, ...]
    passes: tuple[PassRow, ...]
    pass_samples: int
    statement: str | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True)
class SensitivityRow(JsonResult):
    """One assumption moved low and high; days and cost of the best layout each way (None: nothing fits)."""

    assumption: str
    low: Any
    high: Any
    base: Any
    days_base: float
    days_low: float | None
    days_high: float | None
    cost_low: float | None
    cost_high: float | None
    note: str
    gpus: int = 0


# --------------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Plan(JsonResult):
    """What `soraplan plan` computes."""

    spec: Any                                  # the Spec (dumped as JSON)
    objective: str
    deadline_days: float | None
    search: SearchSummary
    gpu_counts: tuple[CountSearch, ...]
    best: BestLayout | None
    best_reason: str
    budget: Budget | None = field(default=None, metadata=OMIT)
    sensitivity: tuple[SensitivityRow, ...] | None = field(default=None, metadata=OMIT)


# ----------------------------------------------------------------------------------------------- estimate
@dataclass(frozen=True)
class ParamCounts(JsonResult):
    total: int
    per_gpu: int                    # the most loaded pipeline stage
    groups: dict[str, int]


@dataclass(frozen=True)
class FlopsPerSample(JsonResult):
    forward_per_sample: float
    train_per_sample: float         # 3 x forward
    hardware_per_sample: float      # with recompute
    recompute_per_sample: float
    forward_by_part: dict[str, int]


@dataclass(frozen=True)
class MemoryGiB(JsonResult):
    """Memory per GPU of the spec's layout, in GiB."""

    weights: float
    grads: float
    optimizer: float
    activations: float
    buffers: float
    total: float
    capacity: float
    fits: bool


@dataclass(frozen=True)
class EstimateStep(JsonResult):
    time_s: float
    mfu: float
    samples_per_s: float
    terms: dict[str, Any]           # every StepTime field


@dataclass(frozen=True)
class EstimateTrain(JsonResult):
    samples: float
    steps: int
    gpus: int
    gpu_hours: float
    days: float
    cost_usd: float
    usd_per_gpu_hour: float


@dataclass(frozen=True)
class ClaimCheck(JsonResult):
    """What "200-400 GPUs for 2-3 months" buys at the spec's cost per sample (low and high ends)."""

    gpus: tuple[int, int]
    days: tuple[int, int]
    gpu_hours: tuple[float, float]
    samples: tuple[float, float]
    passes: tuple[float, float]
    gpu_hours_per_sample: float
    text: str


@dataclass(frozen=True)
class Estimate(JsonResult):
    """What `soraplan estimate` computes for one spec and layout."""

    name: str
    sequence_length: int
    sequence: dict[str, Any]        # the latent/patch arithmetic and its one-line text
    params: ParamCounts
    flops: FlopsPerSample
    memory_gib: MemoryGiB
    activations: dict[str, Any]     # activations.stage_activations, byte totals in GiB
    step: EstimateStep
    train: EstimateTrain
    hardware: Any                   # the GPU (hardware.GPU)
    spec: Any                       # the Spec
    seed_claim: ClaimCheck | None = field(default=None, metadata=OMIT)
    gpu_counts: tuple[dict[str, float], ...] | None = field(default=None, metadata=OMIT)
    attention_comparison: tuple[dict[str, Any], ...] | None = field(default=None, metadata=OMIT)
