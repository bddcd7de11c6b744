"""The GPU path without a GPU: a clear one-line error, the calibration file the planner loads, GPU names,
and the layer count the planner says fits (no GPU figure is claimed here)."""

import json

import pytest


def test_cuda_without_cuda_is_one_line_exit_2():
    import torch
    from typer.testing import CliRunner

    from soraplan.cli import app

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the no-CUDA error cannot happen here")
    res = CliRunner().invoke(app, ["validate", "--device", "cuda"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda") and "Traceback" not in res.output


def test_calibration_out_needs_cuda_and_bad_device():
    from typer.testing import CliRunner

    from soraplan.cli import app

    r = CliRunner().invoke(app, ["validate", "--calibration-out", "x.json"])
    assert r.exit_code == 2 and "only with --device cuda" in r.output
    r = CliRunner().invoke(app, ["validate", "--device", "tpu"])
    assert r.exit_code == 2 and "--device" in r.output


def test_calibration_roundtrip_with_the_planner(tmp_path):
    from soraplan.models.measure_gpu import calibration_record, write_calibration
    from soraplan.planner.step import load_calibration

    rec = calibration_record("h100-sxm", "NVIDIA H100 80GB HBM3", 0.4123456, 0.7, 0.5, {"x": 1})
    path = tmp_path / "sub" / "calib.json"
    write_calibration(path, rec)
    data = json.loads(path.read_text())
    assert data["source"] == "soraplan validate --device cuda" and data["device"].startswith("NVIDIA")
    assert set(data) >= {"gpu", "efficiency", "gemm_efficiency", "attention_efficiency", "date", "measured"}
    assert load_calibration(str(path), "h100-sxm") == pytest.approx(0.4123)
    with pytest.raises(ValueError):
        load_calibration(str(path), "a100-80g")


@pytest.mark.parametrize("name,expected", [("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"),
                                           ("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB", "a100-80g"),
                                           ("NVIDIA A100-SXM4-40GB", "a100-40g"), ("NVIDIA B200", "b200")])
def test_gpu_names(name, expected):
    from soraplan.models.measure_gpu import planner_gpu_name
    from soraplan.planner.hardware import resolve_gpu

    assert planner_gpu_name(name) == expected
    resolve_gpu(expected)


def test_unknown_gpu_is_refused():
    from soraplan.models.measure_gpu import GpuValidationError, planner_gpu_name

    with pytest.raises(GpuValidationError):
        planner_gpu_name("Some Future Accelerator")


def test_layers_that_fit_grow_with_memory_and_recompute():
    from soraplan.models.measure_gpu import gpu_spec, layers_that_fit

    h100 = 79.6 * 2**30
    none = layers_that_fit(lambda n: gpu_spec(n, "none", "h100-sxm"), 40, h100)
    full = layers_that_fit(lambda n: gpu_spec(n, "full", "h100-sxm"), 40, h100)
    big = layers_that_fit(lambda n: gpu_spec(n, "none", "h200"), 40, 139.8 * 2**30)
    assert 1 <= none < full <= 40 and none < big
    spec = gpu_spec(none, "none", "h100-sxm")
    assert spec.seq_len == 30_720 and spec.model.hidden == 3072 and spec.kernels.activation_dtype == "bf16"
