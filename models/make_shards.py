"""Write latent shards in the training format (see soraplan.models.data).

  python -m soraplan.models.make_shards OUT_DIR --samples 64 --per-shard 16 [--model DiT-XL/2 | spec flags...]

Without --from-npz it writes random latents / text states of the spec's shapes (a smoke-test dataset);
with --from-npz FILE it converts arrays `latents`, `text_states`, `text_mask`, `class_labels` from an
.npz (e.g. dumped by your VAE / text-encoder pipeline). Each shard is written to a temp file and renamed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def write_shards(out_dir, arrays: dict, per_shard: int) -> list[Path]:
    """Split `arrays` (name -> tensor with a leading sample dim) into shard-NNNNN.safetensors files."""
    import torch
    from safetensors.torch import save_file

    from .atomic import fsync_dir, fsync_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = next(iter(arrays.values())).shape[0]
    paths = []
    for i, start in enumerate(range(0, n, per_shard)):
        part = {k: v[start:start + per_shard].contiguous() for k, v in arrays.items()}
        if "text_mask" in part:
            part["text_mask"] = part["text_mask"].to(torch.uint8)
        path = out / f"shard-{i:05d}.safetensors"
        tmp = out / f".{path.name}.tmp"
        save_file(part, str(tmp))
        fsync_file(tmp)
        os.replace(tmp, path)
        paths.append(path)
    fsync_dir(out)
    return paths


def synthetic_arrays(spec, samples: int, seed: int = 0) -> dict:
    import torch

    from .loss import synthetic_batch

    b = synthetic_batch(spec, samples, "cpu", torch.Generator().manual_seed(seed))
    b["latents"] = b["latents"].half()
    return b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--per-shard", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--from-npz", default=None)
    ap.add_argument("--tiny", action="store_true", help="shapes of `soraplan train --tiny`")
    ap.add_argument("--model", default=None)
    ap.add_argument("--config", default=None)
    args = ap.parse_args(argv)
    from soraplan.planner.config import build_spec_and_extras

    flags = {"model": args.model} if args.model else {}
    spec, _ = build_spec_and_extras(None, args.config, flags)
    if args.tiny:
        from .tiny import shrink_spec

        spec = shrink_spec(spec)
    if args.from_npz:
        import numpy as np
        import torch

        with np.load(args.from_npz) as z:
            arrays = {k: torch.from_numpy(z[k]) for k in z.files}
    else:
        arrays = synthetic_arrays(spec, args.samples, args.seed)
    paths = write_shards(args.out_dir, arrays, args.per_shard)
    print(f"wrote {len(paths)} shards ({next(iter(arrays.values())).shape[0]} samples) to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
