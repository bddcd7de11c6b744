"""Dataset presets from the seed article: sample counts and clip statistics.

Issue H extends these with duration/resolution distributions, storage and read bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dataset:
    name: str
    samples: int
    kind: str  # "video" | "image"
    mean_seconds: float
    raw_tb: float
    note: str


DATASETS: dict[str, Dataset] = {
    "youku-mplug": Dataset("youku-mplug", 10_000_000, "video", 54.2, 36.0,
                           "Youku-mPLUG: ~10 M Chinese video-text clips, 10-120 s, ~36 TB, 45 categories"),
    "laion-5b": Dataset("laion-5b", 5_850_000_000, "image", 0.0, 240.0,
                        "LAION-5B: 5.85 B image-text pairs (2.3 B English, 2.2 B other languages, 1 B undetermined)"),
}


def get_dataset(name: str) -> Dataset:
    key = name.strip().lower()
    if key not in DATASETS:
        raise ValueError(f"training.dataset: unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key]
