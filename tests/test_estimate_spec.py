"""The Spec: merging preset -> YAML -> flags, validation errors that name the field, property tests."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soraplan.planner import SpecError, build_spec
from soraplan.planner.config import build_spec_and_extras
from soraplan.planner.estimate import estimate

FIELD_PREFIXES = ("video.", "model", "kernels.", "parallel.", "hardware.", "training.", "name", "--config")


def test_seed_sequence_arithmetic():
    spec = build_spec(flags={"frames": 960, "res": 256})
    # 960 frames / 4 = 240 latent frames; 256 / 8 = 32; patches 240/2 x 32/2 x 32/2 = 120 x 16 x 16
    assert spec.video.latent_thw == (240, 32, 32)
    assert spec.video.grid == (120, 16, 16)
    assert spec.seq_len == 30_720


def test_causal_first_frame():
    spec = build_spec(flags={"frames": 17, "res": 256, "causal_first_frame": True, "patch_t": 1})
    assert spec.video.latent_thw == (5, 32, 32)          # 1 + (17-1)/4
    with pytest.raises(SpecError, match=r"video.frames"):
        build_spec(flags={"frames": 960, "causal_first_frame": True})


def test_tokens_directly():
    spec = build_spec(flags={"tokens": 4096})
    assert spec.seq_len == 4096


@pytest.mark.parametrize("flags, field", [
    ({"tp": 5}, "parallel.tp"),                                   # heads 24 % 5
    ({"pp": 3}, "parallel.pp"),                                   # layers 40 % 3
    ({"cp": 7}, "parallel.cp"),                                   # 30720 % 7
    ({"tp": 8, "gpus": 12}, "parallel.gpus"),                     # world % (tp*pp*cp)
    ({"tp": 8, "dp": 2, "gpus": 8}, "parallel.gpus"),
    ({"attention": "window:7,16,16"}, "model.attention"),         # 120 % 7
    ({"attention": "window:8,16"}, "model.attention"),
    ({"attention": "sparse"}, "model.attention"),
    ({"frames": 961}, "video.frames"),
    ({"res": 260}, "video.height"),
    ({"gpu": "tpu-v9"}, "hardware.gpu"),
    ({"adaln": "weird"}, "model.adaln"),
    ({"frames": 0}, "video.frames"),
    ({"dropout": 1.5}, "kernels.dropout"),
    ({"global_batch": 3, "dp": 2}, "parallel.global_batch"),
    ({"model": "nope"}, "model"),
])
def test_errors_name_the_field(flags, field):
    with pytest.raises(SpecError) as e:
        build_spec(flags=flags)
    msg = str(e.value)
    assert msg.startswith(field), msg
    assert "\n" not in msg


def test_unknown_gpu_lists_known():
    with pytest.raises(SpecError, match="a100-80g.*h100-sxm"):
        build_spec(flags={"gpu": "tpu-v9"})


def test_yaml_merge_and_custom_gpu(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "model: {layers: 20}\n"
        "parallel: {tp: 4}\n"
        "hardware:\n  gpu: my-gpu\n  custom: {name: my-gpu, peak_tflops: 500, hbm_gib: 96, hbm_tbs: 3,"
        " intra_node_gbs: 400, inter_node_gbs: 50, usd_per_hour: 2.5}\n"
        "launch: {partition: gpu}\n")
    spec, extras = build_spec_and_extras(config=cfg, flags={"tp": 8})     # flags win over YAML
    assert spec.model.layers == 20 and spec.parallel.tp == 8
    assert spec.hardware.spec.hbm_gib == 96
    assert extras["launch"] == {"partition": "gpu"}


def test_yaml_unknown_key_is_refused(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: {layerz: 20}\n")
    with pytest.raises(SpecError, match=r"^model.layerz"):
        build_spec(config=cfg)


def test_bad_yaml(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: [\n")
    with pytest.raises(SpecError, match="--config"):
        build_spec(config=cfg)
    with pytest.raises(SpecError, match="no such file"):
        build_spec(config=tmp_path / "missing.yaml")


def test_spec_is_frozen():
    spec = build_spec()
    with pytest.raises(Exception):
        spec.parallel.tp = 2  # type: ignore[misc]


flag_values = st.fixed_dictionaries({}, optional={
    "frames": st.integers(-2, 2000), "res": st.sampled_from([0, 64, 100, 128, 256, 512]),
    "vae_stride_t": st.integers(0, 8), "vae_stride_s": st.sampled_from([0, 4, 8, 16]),
    "patch_t": st.integers(0, 4), "patch_s": st.integers(0, 4), "text_tokens": st.integers(-1, 600),
    "tokens": st.one_of(st.none(), st.integers(-1, 100_000)),
    "layers": st.integers(-1, 64), "hidden": st.sampled_from([0, 64, 96, 1024, 3072, 1000]),
    "heads": st.integers(0, 32), "ffn_hidden": st.one_of(st.none(), st.integers(0, 20000)),
    "cross_attn": st.booleans(), "adaln": st.sampled_from(["per-block", "single", "none", "x"]),
    "attention": st.sampled_from(["full", "spatial-temporal", "window:2,4,4", "window:8,16,16", "window:0,1,1", "win"]),
    "attention_kernel": st.sampled_from(["flash", "unfused", "x"]), "dropout": st.floats(-0.5, 1.5),
    "precision": st.sampled_from(["bf16", "fp16", "fp32", "int8"]),
    "tp": st.integers(0, 16), "pp": st.integers(0, 8), "vpp": st.integers(0, 4), "cp": st.integers(0, 8),
    "dp": st.one_of(st.none(), st.integers(0, 64)), "gpus": st.one_of(st.none(), st.integers(0, 1024)),
    "sequence_parallel": st.booleans(), "micro_batch": st.integers(0, 8),
    "global_batch": st.one_of(st.none(), st.integers(0, 4096)),
    "recompute": st.sampled_from(["none", "selective", "full", "some"]),
    "recompute_layers": st.one_of(st.none(), st.integers(-1, 50)),
    "gpu": st.sampled_from(["a100-80g", "h100-sxm", "b200", "l40s", "nope"]),
    "efficiency": st.floats(-0.1, 1.5), "samples": st.integers(-1, 10**9), "epochs": st.floats(-1, 100),
    "model": st.sampled_from(["soraplan-6B", "DiT-XL/2", "DiT-S/8", "unknown"]),
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flag_values)
def test_random_specs_plan_or_name_a_field(flags):
    try:
        spec = build_spec(flags=flags)
    except SpecError as e:
        assert str(e).startswith(FIELD_PREFIXES), str(e)
        assert "\n" not in str(e)
        return
    out = estimate(spec, compare=False).to_json()
    assert out["sequence_length"] > 0
    assert out["memory_gib"]["total"] > 0
    assert out["step"]["time_s"] > 0


valid_flags = st.fixed_dictionaries({
    "frames": st.sampled_from([16, 64, 240, 960]), "res": st.sampled_from([128, 256, 512]),
    "tp": st.sampled_from([1, 2, 4, 8]), "pp": st.sampled_from([1, 2, 4, 5]), "cp": st.sampled_from([1, 2]),
    "dp": st.integers(1, 16), "micro_batch": st.integers(1, 4),
    "attention": st.sampled_from(["full", "spatial-temporal", "window:2,4,4"]),
    "attention_kernel": st.sampled_from(["flash", "unfused"]), "dropout": st.sampled_from([0.0, 0.1]),
    "recompute": st.sampled_from(["none", "selective", "full"]), "adaln": st.sampled_from(["per-block", "single", "none"]),
    "cross_attn": st.booleans(), "gpu": st.sampled_from(["a100-80g", "h100-sxm", "mi300x", "ascend-910b"]),
    "distributed_optimizer": st.booleans(), "sequence_parallel": st.booleans(),
})


@settings(max_examples=150, deadline=None)
@given(valid_flags)
def test_mostly_valid_layouts_estimate(flags):
    try:
        spec = build_spec(flags=flags)
    except SpecError as e:
        assert str(e).startswith(FIELD_PREFIXES), str(e)
        return
    out = estimate(spec).to_json()
    m = out["memory_gib"]
    assert m["total"] == pytest.approx(m["weights"] + m["grads"] + m["optimizer"] + m["activations"] + m["buffers"])
    assert 0 < out["step"]["mfu"] <= 1
    assert out["train"]["days"] > 0
