"""A dataset preset + the Spec's geometry -> storage, read bandwidth and the compute to precompute VAE latents.

For one training sample (a clip of the Spec's frames at its resolution; an image dataset gives one frame):
  latent bytes  = T' * H' * W' * C * bytes        (T', H', W' from the Spec's VAE strides; x2 if the VAE's
                                                   mean and log-variance are stored instead of a sample)
  raw bytes     = video: the dataset's mean bytes per second x clip seconds; image: bytes per image
  read GB/s     = samples/s x bytes per sample     (samples/s: given, or the planner's step model for the Spec)
  VAE encoding  = pixels x VAE-encoder FLOPs per pixel, at the Spec's GPU and efficiency

VAE-encoder FLOPs per pixel (measured, not assumed from a paper: `soraplan profile` on the meta device with
diffusers 0.42.1, FlopCounterMode, 1 MAC = 2 FLOPs; norms/activations not counted):
  image VAE (SD 1.x/2.x AutoencoderKL encoder + quant_conv, 34.2 M params, stride 8, 4 ch): 4.16 MFLOP/pixel at 256^2
      (4.26 at 512^2: the mid-block self-attention grows with the pixel count)
  video VAE (CogVideoX-2b AutoencoderKLCogVideoX encoder, 92.2 M params, 4x8x8, 16 ch): 8.99 MFLOP/pixel
      (17 frames at 256^2)
A Spec with vae_stride_t > 1 uses the video VAE figure, else the image one; `--vae-flops-per-pixel` overrides.
"""

from __future__ import annotations

import math
from typing import Any

from .datasets import Dataset, get_dataset
from .errors import UserError
from .spec import Spec

VAE_ENCODE_EFFICIENCY = 0.40    # achieved / peak for VAE-encoder convolutions (an assumption; --efficiency overrides)

IMAGE_VAE_FLOPS_PER_PIXEL = 4.16e6   # SD AutoencoderKL encoder at 256^2 (see the module docstring)
VIDEO_VAE_FLOPS_PER_PIXEL = 8.99e6   # CogVideoX-2b causal 3D VAE encoder, 17 x 256^2


def vae_flops_per_pixel(spec: Spec) -> float:
    return VIDEO_VAE_FLOPS_PER_PIXEL if spec.video.vae_stride_t > 1 else IMAGE_VAE_FLOPS_PER_PIXEL


def latent_elements_per_sample(spec: Spec, ds: Dataset) -> int:
    v = spec.video
    lt, lh, lw = v.latent_thw
    if ds.kind == "image":
        lt = 1   # one image through the (video) VAE: one latent frame
    return lt * lh * lw * v.latent_channels


def dataset_budget(spec: Spec, dataset: str | None = None, samples_per_s: float | None = None,
                   latent_bytes: int = 2, store_moments: bool = False, vae_flops_pixel: float | None = None,
                   whole_videos: bool = False) -> dict[str, Any]:
    name = dataset or spec.training.dataset
    if not name:
        raise UserError("--dataset: name a dataset preset (youku-mplug, laion-5b)")
    try:
        ds = get_dataset(name)
    except ValueError as e:
        raise UserError(str(e)) from None
    if spec.video.tokens is not None:
        raise UserError("--tokens: the dataset budget needs a video geometry (frames, resolution), not --tokens")
    if latent_bytes not in (1, 2, 4):
        raise UserError(f"--latent-bytes: must be 1, 2 or 4, got {latent_bytes}")
    if samples_per_s is not None and not 0 < samples_per_s <= 1e12:      # also refuses nan and inf
        raise UserError(f"--samples-per-s: must be > 0 and at most 1e12, got {samples_per_s}")
    if vae_flops_pixel is not None and not 0 < vae_flops_pixel <= 1e12:
        raise UserError(f"--vae-flops-per-pixel: must be > 0 and at most 1e12, got {vae_flops_pixel}")
    v = spec.video
    clip_s = v.frames / v.fps
    frames = 1 if ds.kind == "image" else v.frames
    moments = 2 if store_moments else 1

    # latents: one training clip per sample, or every non-overlapping clip of each video
    lat_sample_b = latent_elements_per_sample(spec, ds) * latent_bytes * moments
    clips_per_sample = 1.0
    if whole_videos and ds.kind == "video":
        clips_per_sample = max(1.0, ds.mean_seconds / clip_s)
    lat_total_b = ds.samples * clips_per_sample * lat_sample_b

    # raw: what a loader reads to decode one training sample on the fly
    if ds.kind == "video":
        raw_per_s = ds.raw_bytes_per_sample / ds.mean_seconds
        raw_sample_b = raw_per_s * min(clip_s, ds.mean_seconds)
        bitrate_mbps = raw_per_s * 8 / 1e6
    else:
        raw_sample_b = ds.raw_bytes_per_sample
        bitrate_mbps = None

    if samples_per_s is None:
        from .step import step_time

        samples_per_s = step_time(spec).samples_per_s
        sps_source = "planner step model for this spec"
    else:
        sps_source = "given (--samples-per-s)"

    # VAE encoding of every training sample at the Spec's resolution
    fpp = vae_flops_pixel if vae_flops_pixel is not None else vae_flops_per_pixel(spec)
    pixels_sample = frames * v.height * v.width
    encode_flops = ds.samples * clips_per_sample * pixels_sample * fpp
    hw = spec.hardware
    gpu = hw.spec
    # hardware.efficiency is None unless the user gives a blanket number (the step model then uses its per-op
    # table, step.OP_EFFICIENCY); the VAE encoder's convolutions keep the stated 40 % here
    vae_eff = hw.efficiency if hw.efficiency is not None else VAE_ENCODE_EFFICIENCY
    gpu_s = encode_flops / (gpu.peak_tflops * 1e12 * vae_eff)
    gpus = spec.parallel.world
    gpu_hours = gpu_s / 3600

    tb = 1e12
    return {
        "dataset": ds.name, "note": ds.note, "kind": ds.kind, "samples": ds.samples, "categories": ds.categories,
        "sources": list(ds.sources), "assumptions": list(ds.assumptions),
        "subsets": [{"name": n, "samples": c} for n, c in ds.subsets],
        "durations": {"min_s": ds.min_seconds, "max_s": ds.max_seconds, "mean_s": ds.mean_seconds,
                      "total_hours": ds.total_hours,
                      "bins": [{"label": b.label, "fraction": b.fraction, "seconds": b.seconds} for b in ds.durations]},
        "resolutions": [{"label": b.label, "fraction": b.fraction, "height": b.height, "width": b.width}
                        for b in ds.resolutions],
        # share of videos shorter than one training clip (from the duration bins' representative lengths)
        "short_fraction": sum(b.fraction for b in ds.durations if b.seconds < clip_s) if ds.kind == "video" else 0.0,
        "geometry": {"frames": frames, "height": v.height, "width": v.width, "fps": v.fps, "clip_s": clip_s if frames > 1 else 0,
                     "latent": [1 if ds.kind == "image" else v.latent_thw[0], v.latent_thw[1], v.latent_thw[2]],
                     "latent_channels": v.latent_channels, "latent_bytes": latent_bytes, "store_moments": store_moments,
                     "clips_per_sample": clips_per_sample},
        "storage": {"raw_tb": ds.raw_tb, "raw_mb_per_sample": ds.raw_bytes_per_sample / 1e6, "raw_bitrate_mbps": bitrate_mbps,
                    "latent_mb_per_sample": lat_sample_b / 1e6, "latent_tb": lat_total_b / tb,
                    "latent_over_raw": lat_total_b / (ds.raw_tb * tb)},
        "read": {"samples_per_s": samples_per_s, "samples_per_s_source": sps_source,
                 "latent_gb_per_s": samples_per_s * lat_sample_b / 1e9,
                 "raw_gb_per_s": samples_per_s * raw_sample_b / 1e9,
                 "epoch_hours": ds.samples / samples_per_s / 3600 if samples_per_s else math.inf},
        "vae_encode": {"flops_per_pixel": fpp, "pixels_per_sample": pixels_sample, "total_flops": encode_flops,
                       "gpu": gpu.name, "efficiency": vae_eff, "gpu_hours": gpu_hours, "gpus": gpus,
                       "days": gpu_hours / gpus / 24, "cost_usd": gpu_hours * hw.price,
                       "source": "measured with soraplan profile (diffusers AutoencoderKL / AutoencoderKLCogVideoX encoders)"},
    }
