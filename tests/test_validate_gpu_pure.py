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
    r = CliRunner().invoke(app, ["validate", "--results-out", "x.json"])
    assert r.exit_code == 2 and "--results-out: only with --device cuda" in r.output
    r = CliRunner().invoke(app, ["validate", "--device", "tpu"])
    assert r.exit_code == 2 and "--device" in r.output


def test_calibration_roundtrip_with_the_planner(tmp_path):
    from soraplan.validation.measure_gpu import calibration_record, write_calibration
    from soraplan.planner.step import load_calibration

    rec = calibration_record("h100-sxm", "NVIDIA H100 80GB HBM3", 0.4123456, 0.7, 0.5, {"x": 1})
    path = tmp_path / "sub" / "calib.json"
    write_calibration(path, rec)
    data = json.loads(path.read_text())
    assert data["source"] == "soraplan validate --device cuda" and data["device"].startswith("NVIDIA")
    assert set(data) >= {"gpu", "efficiency", "gemm_efficiency", "attention_efficiency", "date", "measured"}
    assert load_calibration(str(path), "h100-sxm") == {"efficiency": 0.4123456, "gemm": 0.7, "attention": 0.5}
    assert not list(path.parent.glob(".*tmp*"))
    with pytest.raises(ValueError):
        load_calibration(str(path), "a100-80g")


@pytest.mark.parametrize("name,expected", [("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"),
                                           ("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB", "a100-80g"),
                                           ("NVIDIA A100-SXM4-40GB", "a100-40g"), ("NVIDIA B200", "b200")])
def test_gpu_names(name, expected):
    from soraplan.validation.measure_gpu import planner_gpu_name
    from soraplan.planner.hardware import resolve_gpu

    assert planner_gpu_name(name) == expected
    resolve_gpu(expected)


def test_unknown_gpu_is_refused():
    from soraplan.validation.measure_gpu import GpuValidationError, planner_gpu_name

    with pytest.raises(GpuValidationError):
        planner_gpu_name("Some Future Accelerator")


def test_layers_that_fit_grow_with_memory_and_recompute():
    from soraplan.validation.measure_gpu import gpu_spec, layers_that_fit

    h100 = 79.6 * 2**30
    none = layers_that_fit(lambda n: gpu_spec(n, "none", "h100-sxm"), 40, h100)
    full = layers_that_fit(lambda n: gpu_spec(n, "full", "h100-sxm"), 40, h100)
    big = layers_that_fit(lambda n: gpu_spec(n, "none", "h200"), 40, 139.8 * 2**30)
    assert 1 <= none < full <= 40 and none < big
    spec = gpu_spec(none, "none", "h100-sxm")
    assert spec.seq_len == 30_720 and spec.model.hidden == 3072 and spec.kernels.activation_dtype == "bf16"


@pytest.mark.megatron
def test_gpu_training_loop_runs_on_cpu_with_cuda_stubs(megatron_pg, monkeypatch):
    """The GPU path's step loop and Megatron-style mixed precision (fp32 main grads folded by hooks, fp32
    master + AdamW, bf16 weights refreshed) on a tiny model on CPU; CUDA memory calls stubbed."""
    import torch

    from soraplan.validation import measure_gpu
    from soraplan.planner.config import build_spec

    for name in ("synchronize", "reset_peak_memory_stats", "empty_cache"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 1234)
    spec = build_spec(flags={"frames": 16, "res": 64, "latent_channels": 4, "text_tokens": 8, "text_dim": 32,
                             "layers": 2, "hidden": 64, "heads": 4, "ffn_hidden": 256, "precision": "fp32"})
    monkeypatch.setattr(measure_gpu, "DEVICE", "cpu")
    seen = []
    m = measure_gpu._timed_layout(spec, 2, seen.append)
    assert m["max_memory_allocated"] == 1234 and m["fwd_bwd_s"] > 0 and m["step_s"] >= m["fwd_bwd_s"]
    assert len(seen) == 4


def test_fit_and_time_backs_off_after_an_oom(monkeypatch):
    import torch

    from soraplan.validation import measure_gpu

    monkeypatch.setattr(torch.cuda, "empty_cache", lambda *a, **k: None)
    calls = []

    def fake(spec, steps, progress):
        calls.append(spec.model.layers)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("fake")
        return {"fwd_bwd_s": 1.0, "step_s": 1.1, "max_memory_allocated": 1}

    monkeypatch.setattr(measure_gpu, "_timed_layout", fake)
    spec, m, planned, backoff = measure_gpu._fit_and_time(lambda n: measure_gpu.gpu_spec(n, "none", "h100-sxm"), 40,
                                                          79.6 * 2**30, 1, lambda s: None)
    assert calls[1] == int(calls[0] * 0.75) and spec.model.layers == calls[1]
    assert planned == calls[0] and backoff == [{"layers": calls[0], "error": "fake"}]


def test_the_failed_model_is_freed_before_the_retry(monkeypatch):
    """The model of an out-of-memory step sits in a reference cycle and in the traceback's frames: it must be
    collected before the next build, which only a gc.collect() outside the except block does."""
    import weakref

    import torch

    from soraplan.validation import measure_gpu

    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda *a, **k: emptied.append(1))
    refs, alive_at_next_build = [], []

    class Model:
        pass

    def fake(spec, steps, progress):
        alive_at_next_build.append([r() is not None for r in refs])
        model = Model()
        model.cycle = model                     # freed only by the cycle collector
        refs.append(weakref.ref(model))
        if len(refs) == 1:
            raise torch.cuda.OutOfMemoryError("fake")
        return {"fwd_bwd_s": 1.0, "step_s": 1.1, "max_memory_allocated": 1}

    monkeypatch.setattr(measure_gpu, "_timed_layout", fake)
    measure_gpu._fit_and_time(lambda n: measure_gpu.gpu_spec(n, "none", "h100-sxm"), 40, 79.6 * 2**30, 1,
                              lambda s: None)
    assert alive_at_next_build == [[], [False]] and emptied


def test_oom_at_one_layer_gives_up_with_one_line(monkeypatch):
    import torch

    from soraplan.validation import measure_gpu

    monkeypatch.setattr(torch.cuda, "empty_cache", lambda *a, **k: None)
    tried = []

    def fake(spec, steps, progress):
        tried.append(spec.model.layers)
        raise torch.cuda.OutOfMemoryError("fake")

    monkeypatch.setattr(measure_gpu, "_timed_layout", fake)
    with pytest.raises(measure_gpu.GpuValidationError, match="out of memory even at 1 layers"):
        measure_gpu._fit_and_time(lambda n: measure_gpu.gpu_spec(n, "none", "h100-sxm"), 2, 79.6 * 2**30, 1,
                                  lambda s: None)
    assert tried == [2, 1]


def test_layouts_are_separated_by_a_collection(monkeypatch, tmp_path):
    """run(): the first layout's model (in a reference cycle) is gone before the second layout starts."""
    import types
    import weakref

    import torch

    from soraplan.validation import measure_gpu

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: types.SimpleNamespace(total_memory=80 * 2**30))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda *a, **k: None)
    refs, alive = [], []

    class Model:
        pass

    def fake_fit(spec_at, max_layers, capacity, steps, progress):
        alive.append([r() is not None for r in refs])
        model = Model()
        model.cycle = model
        refs.append(weakref.ref(model))
        return spec_at(2), {"fwd_bwd_s": 2.0, "step_s": 2.1, "max_memory_allocated": 1}, 2, []

    monkeypatch.setattr(measure_gpu, "_fit_and_time", fake_fit)
    monkeypatch.setattr(measure_gpu, "microbench", lambda spec, peak: {"gemm_efficiency": 0.7, "gemm_s": 1.0,
                                                                       "attention_efficiency": 0.5, "attention_s": 1.0})
    partial, first = [], []
    measure_gpu.run(None, steps=1, on_result=lambda r: (partial.append((r["complete"], len(r["rows"]))),
                                                        first.append(r["calibration"])))
    assert alive == [[], [False]]
    assert partial == [(False, 5), (False, 10), (True, 11)]   # + the held-out step-time row at the end
    # after the first layout the calibration already holds the step efficiency, and the planner loads it
    from soraplan.planner.step import load_calibration

    path = tmp_path / "partial.json"
    measure_gpu.write_calibration(path, first[0])
    assert set(load_calibration(str(path), "h100-sxm")) == {"efficiency"}


def test_run_assembles_rows_and_calibration(monkeypatch, tmp_path):
    """run() with the GPU work stubbed: rows, tolerance on memory, the calibration the planner reads."""
    import types

    import torch

    from soraplan.validation import measure_gpu
    from soraplan.planner.step import load_calibration

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: types.SimpleNamespace(total_memory=80 * 2**30))

    def fake_fit(spec_at, max_layers, capacity, steps, progress):
        from soraplan.planner.memory import memory

        spec = spec_at(4)
        mem = memory(spec)
        return spec, {"fwd_bwd_s": 2.0, "step_s": 2.1, "max_memory_allocated": mem.total - mem.buffers}, 4, []

    monkeypatch.setattr(measure_gpu, "_fit_and_time", fake_fit)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda *a, **k: None)
    monkeypatch.setattr(measure_gpu, "microbench", lambda spec, peak: {"gemm_efficiency": 0.7, "gemm_s": 1.0,
                                                                       "attention_efficiency": 0.5, "attention_s": 1.0})
    out = measure_gpu.run(None, steps=1)
    mem_rows = [r for r in out["rows"] if r.quantity.startswith("max_memory_allocated")]
    assert len(mem_rows) == 2 and all(r.ok and r.tolerance == measure_gpu.GPU_MEMORY_TOL for r in mem_rows)
    cal = out["calibration"]
    assert cal["gpu"] == "h100-sxm" and 0 < cal["efficiency"] <= 1 and cal["measured"]["recompute_full"]["layers"] == 4
    path = tmp_path / "c.json"
    measure_gpu.write_calibration(path, cal)
    assert load_calibration(str(path), "h100-sxm")["efficiency"] == cal["efficiency"]


def test_held_out_step_time_row_applies_the_calibration_file():
    """The calibration of one layout, applied through hardware.calibration to another, predicts its step time;
    the row is checked at 15 %."""
    from soraplan.planner.config import build_spec
    from soraplan.planner.spec import spec_with
    from soraplan.planner.step import step_time
    from soraplan.validation.measure_gpu import calibration_record, held_out_row

    spec = build_spec(flags={"frames": 96, "res": 128, "gpu": "a100-80g", "recompute": "full"})
    cal = calibration_record("a100-80g", "NVIDIA A100-SXM4-80GB", 0.40, None, None, {})
    flat = step_time(spec_with(spec, hardware={"efficiency": 0.40})).time_s
    assert step_time(spec).time_s != pytest.approx(flat, rel=1e-3)      # the calibration changes the prediction
    ok = held_out_row(cal, spec, flat * 1.10)
    assert ok.predicted == pytest.approx(flat, rel=1e-12) and ok.tolerance == 0.15 and ok.ok
    assert not held_out_row(cal, spec, flat * 1.30).ok
