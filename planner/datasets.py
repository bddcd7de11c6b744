"""Dataset presets for Sora-class training (the public datasets Sora compute estimates cite): sample counts, clip statistics, storage, languages.

`get_dataset(name).samples` feeds `training.samples` (config.py); `dataset_budget.py` turns a preset plus the
Spec's geometry into storage, read bandwidth and VAE-encoding compute. Every number says whether it is
published (with the source) or an assumption we chose (so a reader can replace it).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Bin:
    label: str
    fraction: float
    seconds: float = 0.0          # representative duration of the bin (video)
    height: int = 0               # representative resolution of the bin
    width: int = 0


@dataclass(frozen=True)
class Dataset:
    name: str
    samples: int
    kind: str  # "video" | "image"
    mean_seconds: float
    raw_tb: float
    note: str
    categories: int = 0
    min_seconds: float = 0.0
    max_seconds: float = 0.0
    durations: tuple[Bin, ...] = ()
    resolutions: tuple[Bin, ...] = ()
    subsets: tuple[tuple[str, int], ...] = ()
    sources: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = field(default_factory=tuple)

    @property
    def raw_bytes_per_sample(self) -> float:
        return self.raw_tb * 1e12 / self.samples

    @property
    def total_hours(self) -> float:
        return self.samples * self.mean_seconds / 3600

    @property
    def mean_pixels(self) -> float:
        """Mean pixels per frame over the resolution distribution."""
        return sum(b.fraction * b.height * b.width for b in self.resolutions)


# Youku-mPLUG (Xu et al. 2023, arXiv:2306.04362): 10 M Chinese video-text pairs filtered from 400 M raw Youku
# videos, 45 categories, clips of 10-120 s, mean 54.2 s, ~36 TB. Per clip: 36e12 / 1e7 = 3.6 MB, i.e.
# 3.6 MB / 54.2 s = 0.53 Mbit/s - an SD-class H.264 bitrate.
YOUKU_MPLUG = Dataset(
    "youku-mplug", 10_000_000, "video", 54.2, 36.0,
    "Youku-mPLUG: ~10 M Chinese video-text clips, 10-120 s, ~36 TB, 45 categories",
    categories=45, min_seconds=10, max_seconds=120,
    # Assumed shape (the paper gives the 10-120 s range and the 54.2 s mean, not the histogram); the bins'
    # mean is 0.30*20 + 0.32*45 + 0.20*75 + 0.18*105 = 54.3 s.
    durations=(Bin("10-30 s", 0.30, seconds=20), Bin("30-60 s", 0.32, seconds=45),
               Bin("60-90 s", 0.20, seconds=75), Bin("90-120 s", 0.18, seconds=105)),
    # Assumed (not published): the 0.53 Mbit/s mean bitrate points at mostly 480p with some 720p/1080p.
    resolutions=(Bin("480p", 0.70, height=480, width=854), Bin("720p", 0.25, height=720, width=1280),
                 Bin("1080p", 0.05, height=1080, width=1920)),
    sources=("Xu et al. 2023, Youku-mPLUG, arXiv:2306.04362 (10 M clips, 400 M raw, 45 categories, 10-120 s)",),
    assumptions=("duration histogram: assumed bins matching the published range and 54.2 s mean",
                 "resolution mix: assumed from the ~0.53 Mbit/s mean bitrate (36 TB / 10 M clips / 54.2 s)"),
)

# LAION-5B (Schuhmann et al. 2022, arXiv:2210.08402): 5.85 B CLIP-filtered image-text pairs: laion2B-en 2.32 B,
# laion2B-multi 2.26 B (100+ other languages), laion1B-nolang 1.27 B (language undetermined). Downloaded with
# img2dataset at 384 px (resize + center-crop, webdataset shards) it is ~240 TB (LAION's release notes).
LAION_5B = Dataset(
    "laion-5b", 5_850_000_000, "image", 0.0, 240.0,
    "LAION-5B: 5.85 B image-text pairs (2.32 B English, 2.26 B other languages, 1.27 B undetermined)",
    subsets=(("laion2B-en", 2_320_000_000), ("laion2B-multi", 2_260_000_000), ("laion1B-nolang", 1_270_000_000)),
    # Assumed mix of source sizes (LAION publishes per-subset width/height histograms, not these bins); the
    # 240 TB figure is for images resized to 384 px, which is what a 256-512 px pre-training run reads.
    resolutions=(Bin("<256 px", 0.25, height=224, width=224), Bin("256-512 px", 0.45, height=384, width=384),
                 Bin("512-1024 px", 0.22, height=768, width=768), Bin(">=1024 px", 0.08, height=1280, width=1280)),
    sources=("Schuhmann et al. 2022, LAION-5B, arXiv:2210.08402 (5.85 B = 2.32 B en + 2.26 B multi + 1.27 B nolang)",
             "LAION-5B release notes: ~240 TB at 384 px with img2dataset"),
    assumptions=("resolution mix: assumed bins; raw storage is the published 384 px download",),
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (YOUKU_MPLUG, LAION_5B)}


def get_dataset(name: str) -> Dataset:
    key = name.strip().lower()
    if key not in DATASETS:
        raise ValueError(f"training.dataset: unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key]
