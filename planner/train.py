"""Time to train: step cost -> GPU-hours, wall-clock days and dollars for a number of samples."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .spec import Spec, spec_with
from .step import step_time


@dataclass(frozen=True)
class TrainBudget:
    samples: float
    steps: int
    gpus: int
    gpu_hours: float
    days: float
    cost_usd: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def training_samples(spec: Spec) -> float:
    """Samples seen in training: the spec's samples times its epochs."""
    return spec.training.samples * spec.training.epochs


def train_budget(spec: Spec) -> TrainBudget:
    st = step_time(spec)
    samples = training_samples(spec)
    steps = math.ceil(samples / st.samples_per_step)
    seconds = steps * st.time_s
    gpus = spec.parallel.world
    gpu_hours = seconds * gpus / 3600
    return TrainBudget(samples, steps, gpus, gpu_hours, seconds / 86400, gpu_hours * spec.hardware.price)


def with_gpus(spec: Spec, gpus: int) -> Spec | None:
    """The same spec on `gpus` GPUs (rounded down to a multiple of tp*pp*cp); None if fewer than one replica."""
    p = spec.parallel
    mp = p.tp * p.pp * p.cp
    n = gpus // mp * mp
    if n < mp:
        return None
    return spec_with(spec, parallel={"dp": None, "gpus": n, "global_batch": None,
                                     "recompute_layers": p.recompute_layers, "sequence_parallel": p.sequence_parallel})


def compare_gpu_counts(spec: Spec) -> list[dict[str, float]]:
    rows = []
    for n in spec.training.compare_gpus:
        s2 = with_gpus(spec, n)
        if s2 is None:
            continue
        b = train_budget(s2)
        rows.append({"gpus_asked": n, "gpus": b.gpus, "days": b.days, "gpu_hours": b.gpu_hours, "cost_usd": b.cost_usd,
                     "epochs_in_60_days": 60 / b.days * spec.training.epochs,
                     "epochs_in_90_days": 90 / b.days * spec.training.epochs})
    return rows
