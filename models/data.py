"""Training data: synthetic batches (default) or latent shards on disk, in a deterministic,
DistributedSampler-style order.

Shard format (one safetensors file per shard, `*.safetensors` in a directory, read in name order):
  latents      [N, C, T, H, W]  float16/bfloat16/float32   VAE latents of N clips
  text_states  [N, T_txt, D]    float                      text-encoder states (text-conditional models)
  text_mask    [N, T_txt]       uint8/bool                 1 = real token
  class_labels [N]              int64                      class-conditional models
Written by `python -m soraplan.models.make_shards`. A bad shard fails with one line naming the file.

Order: every epoch is a permutation of all samples drawn from (seed, epoch); the sample of DP rank r at
step k, micro-batch j, row i is a pure function of (seed, k, j, i, r), so a resumed run reads exactly
what the uninterrupted run would have read (the data-order state is the step number).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from soraplan.planner.errors import UserError


def step_generator(seed: int, step: int, slot: int, stream: int) -> torch.Generator:
    """A generator for one micro-batch slot of a step (slot = dp_rank * microbatches + micro, so dp=2 and
    one process accumulating 2 micro-batches draw the same numbers); stream 0 = data, 1 = noise."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 10_007 + slot * 101 + stream) % (2 ** 62))


def expected_fields(spec) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes the model needs from a shard."""
    from .dit import latent_shape

    v, m = spec.video, spec.model
    out: dict[str, tuple[int, ...]] = {"latents": tuple(latent_shape(spec))}
    if m.cross_attn:
        out["text_states"] = (v.text_tokens, v.text_dim)
        out["text_mask"] = (v.text_tokens,)
    if m.conditioning == "class":
        out["class_labels"] = ()
    return out


@dataclass(frozen=True)
class Shard:
    path: Path
    rows: int


class ShardDataset:
    """Index over a directory of safetensors shards; validates every header against the spec up front."""

    def __init__(self, directory: str | Path, spec):
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise UserError(f"data: {self.dir} is not a directory of *.safetensors shards")
        paths = sorted(self.dir.glob("*.safetensors"))
        if not paths:
            raise UserError(f"data: no *.safetensors shards in {self.dir}")
        self.fields = expected_fields(spec)
        self.shards = [self._check(p) for p in paths]
        self.offsets = [0]
        for s in self.shards:
            self.offsets.append(self.offsets[-1] + s.rows)

    def _check(self, path: Path) -> Shard:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                keys = set(f.keys())
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
        except Exception as e:  # noqa: BLE001 - any unreadable header is a bad shard
            raise UserError(f"data: bad shard {path}: cannot read safetensors header ({type(e).__name__}: {e})") from None
        missing = sorted(set(self.fields) - keys)
        if missing:
            raise UserError(f"data: bad shard {path}: missing {', '.join(missing)} (has {', '.join(sorted(keys))})")
        rows = shapes["latents"][0] if shapes["latents"] else 0
        for k, want in self.fields.items():
            got = shapes[k]
            if got[1:] != want or got[0] != rows:
                raise UserError(f"data: bad shard {path}: {k} has shape {list(got)}, expected [{rows}, {', '.join(map(str, want))}]"
                                .replace(", ]", "]"))
        if rows == 0:
            raise UserError(f"data: bad shard {path}: no samples")
        return Shard(path, rows)

    def __len__(self) -> int:
        return self.offsets[-1]

    def read(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Samples by global index -> a batch dict (stacked tensors)."""
        import bisect

        from safetensors import safe_open

        rows: dict[str, list[torch.Tensor]] = {k: [] for k in self.fields}
        for idx in indices:
            s = bisect.bisect_right(self.offsets, idx) - 1
            shard = self.shards[s]
            try:
                with safe_open(str(shard.path), framework="pt") as f:
                    for k in self.fields:
                        rows[k].append(f.get_slice(k)[idx - self.offsets[s]])
            except Exception as e:  # noqa: BLE001
                raise UserError(f"data: bad shard {shard.path}: cannot read sample {idx - self.offsets[s]} ({type(e).__name__}: {e})") from None
        batch = {k: torch.stack(v) for k, v in rows.items()}
        if "text_mask" in batch:
            batch["text_mask"] = batch["text_mask"].bool()
        return batch


class Loader:
    """Deterministic per-step batches for one DP rank (synthetic when `dataset` is None)."""

    def __init__(self, spec, seed: int, dp_rank: int, dp_size: int, micro_batch: int, dataset: ShardDataset | None = None):
        self.spec, self.seed, self.dp_rank, self.dp_size, self.mb = spec, seed, dp_rank, dp_size, micro_batch
        self.dataset = dataset
        self._perm: tuple[int, torch.Tensor] | None = None

    def _epoch_perm(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._perm = (epoch, torch.randperm(len(self.dataset), generator=g))
        return self._perm[1]

    def batch(self, step: int, micro: int, microbatches: int) -> dict[str, torch.Tensor]:
        if self.dataset is None:
            from .loss import synthetic_batch

            return synthetic_batch(self.spec, self.mb, "cpu", step_generator(self.seed, step, self.dp_rank * microbatches + micro, 0))
        # global sample position of this rank's rows: like DistributedSampler, rank r takes every dp-th sample
        n = len(self.dataset)
        per_step = microbatches * self.mb * self.dp_size
        idx = []
        for i in range(self.mb):
            pos = step * per_step + (micro * self.mb + i) * self.dp_size + self.dp_rank
            epoch, k = divmod(pos, n)
            idx.append(int(self._epoch_perm(epoch)[k]))
        return self.dataset.read(idx)
