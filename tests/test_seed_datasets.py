"""Dataset presets (Youku-mPLUG, LAION-5B) and the storage / bandwidth / VAE-encoding budget."""

import json

import pytest
from typer.testing import CliRunner

from soraplan.cli import app
from soraplan.planner import build_spec
from soraplan.planner.dataset_budget import IMAGE_VAE_FLOPS_PER_PIXEL, VIDEO_VAE_FLOPS_PER_PIXEL, dataset_budget
from soraplan.planner.datasets import get_dataset
from soraplan.planner.errors import UserError

runner = CliRunner()


def test_youku_mplug_published_numbers():
    # Xu et al. 2023: 10 M clips (from 400 M raw videos), 45 categories, 10-120 s, mean 54.2 s, ~36 TB.
    d = get_dataset("youku-mplug")
    assert d.samples == 10_000_000 and d.categories == 45
    assert (d.min_seconds, d.max_seconds, d.mean_seconds, d.raw_tb) == (10, 120, 54.2, 36.0)
    assert sum(b.fraction for b in d.durations) == pytest.approx(1.0)
    assert sum(b.fraction * b.seconds for b in d.durations) == pytest.approx(54.2, abs=0.5)  # bins keep the mean
    assert sum(b.fraction for b in d.resolutions) == pytest.approx(1.0)
    # 36e12 B / 1e7 clips = 3.6 MB per clip; / 54.2 s * 8 = 0.531 Mbit/s
    assert d.raw_bytes_per_sample == pytest.approx(3.6e6)
    assert d.total_hours == pytest.approx(1e7 * 54.2 / 3600)


def test_laion_5b_published_numbers():
    # Schuhmann et al. 2022: 5.85 B = 2.32 B English + 2.26 B multilingual + 1.27 B undetermined language.
    d = get_dataset("laion-5b")
    assert d.samples == 5_850_000_000 and d.kind == "image"
    assert dict(d.subsets) == {"laion2B-en": 2_320_000_000, "laion2B-multi": 2_260_000_000, "laion1B-nolang": 1_270_000_000}
    assert sum(n for _, n in d.subsets) == d.samples
    assert sum(b.fraction for b in d.resolutions) == pytest.approx(1.0)


def test_unknown_dataset_is_a_user_error():
    with pytest.raises(ValueError, match="training.dataset"):
        get_dataset("webvid-99m")


def test_youku_budget_by_hand():
    spec = build_spec(flags={"frames": 96, "res": 256, "gpus": 64, "dataset": "youku-mplug"})
    r = dataset_budget(spec, samples_per_s=100.0)
    # latent of one training clip: 96/4 x 256/8 x 256/8 x 16 channels x 2 bytes = 24*32*32*16*2 = 786,432 B
    assert r["storage"]["latent_mb_per_sample"] == pytest.approx(0.786432)
    assert r["storage"]["latent_tb"] == pytest.approx(1e7 * 786_432 / 1e12)
    # reads at 100 samples/s: latents 78.6 MB/s; raw 4 s of a 0.531 Mbit/s stream = 3.6e6/54.2*4 B per sample
    assert r["read"]["latent_gb_per_s"] == pytest.approx(100 * 786_432 / 1e9)
    assert r["read"]["raw_gb_per_s"] == pytest.approx(100 * 3.6e6 / 54.2 * 4 / 1e9)
    # VAE encoding: 1e7 clips x 96 x 256^2 pixels x 8.99 MFLOP/pixel (video VAE, stride_t 4) at 40 % of 312 TFLOP/s
    flops = 1e7 * 96 * 256 * 256 * VIDEO_VAE_FLOPS_PER_PIXEL
    assert r["vae_encode"]["total_flops"] == pytest.approx(flops)
    assert r["vae_encode"]["gpu_hours"] == pytest.approx(flops / (312e12 * 0.4) / 3600)
    assert r["vae_encode"]["days"] == pytest.approx(r["vae_encode"]["gpu_hours"] / 64 / 24)


def test_whole_videos_and_moments():
    spec = build_spec(flags={"frames": 96, "res": 256, "dataset": "youku-mplug"})
    one = dataset_budget(spec, samples_per_s=1.0)
    whole = dataset_budget(spec, samples_per_s=1.0, whole_videos=True, store_moments=True)
    # 54.2 s / 4 s = 13.55 clips per video, x2 for mean + logvar
    assert whole["storage"]["latent_tb"] == pytest.approx(one["storage"]["latent_tb"] * 54.2 / 4 * 2)
    assert one["short_fraction"] == 0.0
    # the seed's 40 s clips: bins of 20 s (30 %) are shorter than one training clip
    long = dataset_budget(build_spec(flags={"frames": 960, "res": 256, "dataset": "youku-mplug"}), samples_per_s=1.0)
    assert long["short_fraction"] == pytest.approx(0.30)


def test_laion_budget_uses_one_frame_and_image_vae():
    spec = build_spec(flags={"model": "DiT-XL/2", "dataset": "laion-5b"})
    r = dataset_budget(spec, samples_per_s=1000.0)
    # DiT-XL/2 at 256^2: latent 1 x 32 x 32 x 4 x 2 B = 8,192 B per image; 5.85e9 images -> 47.9 TB
    assert r["storage"]["latent_mb_per_sample"] == pytest.approx(8192 / 1e6)
    assert r["storage"]["latent_tb"] == pytest.approx(5.85e9 * 8192 / 1e12)
    assert r["vae_encode"]["flops_per_pixel"] == IMAGE_VAE_FLOPS_PER_PIXEL
    assert r["vae_encode"]["total_flops"] == pytest.approx(5.85e9 * 256 * 256 * IMAGE_VAE_FLOPS_PER_PIXEL)


def test_budget_errors():
    spec = build_spec(flags={"frames": 96, "res": 256})
    with pytest.raises(UserError, match="--dataset"):
        dataset_budget(spec)
    with pytest.raises(UserError, match="--samples-per-s"):
        dataset_budget(spec, "youku-mplug", samples_per_s=-1)


def test_cli_dataset_json():
    res = runner.invoke(app, ["estimate", "dataset", "--dataset", "youku-mplug", "--frames", "96", "--res", "256",
                              "--gpus", "64", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["samples"] == 10_000_000
    assert r["read"]["samples_per_s_source"].startswith("planner")
    assert {"storage", "read", "vae_encode", "durations", "resolutions"} <= set(r)


def test_cli_dataset_table_and_errors():
    res = runner.invoke(app, ["estimate", "dataset", "--dataset", "laion-5b", "--model", "DiT-XL/2"])
    assert res.exit_code == 0, res.output
    assert "laion2B-en" in res.stdout
    bad = runner.invoke(app, ["estimate", "dataset", "--dataset", "nope"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: training.dataset")
    bad = runner.invoke(app, ["estimate", "dataset"])
    assert bad.exit_code == 2 and "--dataset" in bad.stderr
