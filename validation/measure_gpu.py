"""The GPU validation run (`soraplan validate --device cuda`): memory, step time and a calibration file.

What it does, on one CUDA GPU:
  1. The 6B width (soraplan-6B: 3072 wide, 24 heads, FFN 12288, cross-attention) at the full 30,720 tokens,
     bf16, micro-batch 1, with as many layers as the planner says fit in 85 % of this GPU's memory (fewer,
     by 25 % steps, if the allocator disagrees: an OOM is a finding, reported and recorded).
  2. Megatron-style mixed precision by hand, so the memory is what the planner models (18 bytes/param):
     bf16 weights, fp32 main grads (bf16 grads are folded in and freed by a post-accumulate hook),
     fp32 master weights and AdamW moments (torch.optim.AdamW, foreach off), bf16 weights refreshed.
  3. Per layout (recompute none and full): 2 warm-up steps, then `steps` timed steps, with the SDPA backend
     pinned to what the planner assumes (`SDPA_BACKENDS`: flash for self-attention; the masked
     cross-attention, which flash cannot run, on the memory-efficient kernel).
     torch.cuda.max_memory_allocated over a timed step vs the planner's weights + grads + optimizer +
     activations (the planner's CUDA-context/NCCL allowance `buffer_gib` is not allocator memory, so it is
     left out of this comparison), within 10 %.
     forward+backward time -> achieved TFLOP/s = planner hardware FLOPs / time, against the step model's
     compute time; efficiency = achieved / peak. Between layouts every reference cycle is collected and
     the allocator's cache emptied, so one layout's model cannot inflate the next one's peak.
  4. Microbenchmarks: a bf16 GEMM of the MLP's shape and flash SDPA forward+backward at 30,720 tokens
     -> gemm_efficiency, attention_efficiency.
The calibration JSON is what `soraplan.planner.step.load_calibration` reads ("gpu", "efficiency"); the
efficiencies keep full precision. `run(on_result=...)` receives the result so far after every layout, so
a failure or a timeout keeps what was measured.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

GPU_MEMORY_TOL = 0.10
FIT_FRACTION = 0.85
OOM_RETRIES = 4

# Where the model and tensors live: "cuda"; the CPU rehearsal (benchmarks/gpu_rehearsal.py) sets "cpu".
DEVICE = "cuda"

# SDPA backends allowed while training, in priority order. Self-attention (no mask) runs flash; the masked
# cross-attention cannot (flash takes no attn_mask) and runs the memory-efficient kernel. That is what the
# planner's memory model assumes (flash keeps q, k, v, out and the logsumexp; the masked kernel a float copy
# of the text mask). No math fallback: a silent fallback would measure another kernel.
SDPA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION")
SDPA_RECORD = {"allowed_in_priority_order": list(SDPA_BACKENDS), "self_attention": "FLASH_ATTENTION",
               "cross_attention_masked": "EFFICIENT_ATTENTION", "microbench_attention": "FLASH_ATTENTION"}

# torch.cuda.get_device_name() substrings -> planner/hardware.py names (first match wins)
_NAMES = (("H200", "h200"), ("H800", "h800"), ("H100 PCIe", "h100-pcie"), ("H100", "h100-sxm"), ("B200", "b200"),
          ("A100-SXM4-40GB", "a100-40g"), ("A100-PCIE-40GB", "a100-40g"), ("A100", "a100-80g"), ("L40S", "l40s"),
          ("MI300X", "mi300x"))


class GpuValidationError(RuntimeError):
    """A one-line reason the GPU validation cannot run or finish."""


def planner_gpu_name(device_name: str) -> str:
    """The planner's GPU table name for a CUDA device name; GpuValidationError when it has none."""
    for key, name in _NAMES:
        if key.lower() in device_name.lower():
            return name
    raise GpuValidationError(f"GPU {device_name!r} is not in soraplan's GPU table (planner/hardware.py): "
                             "add it there before calibrating")


def calibration_record(gpu: str, device_name: str, efficiency: float, gemm: Optional[float],
                       attention: Optional[float], measured: dict[str, Any]) -> dict[str, Any]:
    """The calibration object, efficiencies at full precision.

    Args:
        gpu: the planner's GPU name. device_name: torch's name for the device.
        efficiency: achieved / peak of the training step, in (0, 1].
        gemm, attention: the microbenchmarks' achieved / peak, or None before they ran.
        measured: the raw measurements kept beside the efficiencies.
    Returns:
        the JSON object `planner.step.load_calibration` reads.
    """
    return {"gpu": gpu, "efficiency": efficiency, "gemm_efficiency": gemm, "attention_efficiency": attention,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "device": device_name, "source": "soraplan validate --device cuda", "measured": measured}


HELD_OUT_TOL = 0.15      # a configuration the calibration did not see: its step time within 15 %


def held_out_row(calibration: dict[str, Any], spec: Any, measured_step_s: float) -> Any:
    """The checked step-time row: the calibration measured on the no-recompute layout, applied as a user
    would (a calibration file, `hardware.calibration`) to the full-recompute layout it never saw.

    Args:
        calibration: the calibration object (`calibration_record`), from the no-recompute layout only.
        spec: the full-recompute layout's spec. measured_step_s: its measured median step time.
    Returns:
        The Row, tolerance HELD_OUT_TOL.
    """
    import tempfile

    from soraplan.planner.spec import spec_with
    from soraplan.planner.step import step_time

    from .measure_compare import Row

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "calibration.json"
        write_json_atomic(path, calibration)
        predicted = step_time(spec_with(spec, hardware={"calibration": str(path)})).time_s
    name = f"{spec.model.name} width, {spec.model.layers} layers, {spec.seq_len:,} tokens, recompute full"
    return Row(name, "step time with the calibration of the no-recompute layout (held out)", measured_step_s,
               predicted, HELD_OUT_TOL, "s")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON: a temp file in the same folder, fsync, rename.

    Args:
        path: the destination (its folder is created). obj: anything json.dumps accepts.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_calibration(path: Path, record: dict[str, Any]) -> None:
    """Atomically write the calibration JSON (temp file, fsync, rename)."""
    write_json_atomic(path, record)


def release_memory() -> None:
    """Free what the last layout left: reference cycles (gc) and the allocator's cached blocks.

    Call it outside any `except` block: there the traceback still holds the failed step's frames and,
    through them, its model.
    """
    import torch

    gc.collect()
    torch.cuda.empty_cache()


def sdpa_pinned():
    """A context manager restricting SDPA to `SDPA_BACKENDS`, in that priority order."""
    import inspect

    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = [getattr(SDPBackend, b) for b in SDPA_BACKENDS]
    if "set_priority" in inspect.signature(sdpa_kernel).parameters:
        return sdpa_kernel(backends, set_priority=True)
    return sdpa_kernel(backends)         # torch's own order also puts flash before memory-efficient


def gpu_spec(layers: int, recompute: str, gpu: str, base=None):
    """The 6B width at 30,720 tokens (or the user's spec) with `layers` layers, one GPU, bf16, flash."""
    from soraplan.planner.config import build_spec
    from soraplan.planner.spec import Spec

    spec = base if base is not None else build_spec(flags={"gpu": gpu})
    d = spec.model_dump()
    d["model"]["layers"] = layers
    d["parallel"].update(tp=1, pp=1, vpp=1, cp=1, dp=1, gpus=1, sequence_parallel=False, micro_batch=1,
                         global_batch=None, recompute=recompute, recompute_layers=None)
    d["kernels"].update(attention_kernel="flash", cpu_semantics=False)
    d["hardware"].update(gpu=gpu, custom=None, calibration=None)
    return Spec.model_validate(d)


def layers_that_fit(spec_at: Callable[[int], Any], max_layers: int, capacity_bytes: float) -> int:
    """The most layers whose planned allocator memory (no buffer allowance) is within FIT_FRACTION."""
    from soraplan.planner.memory import memory

    best = 0
    for n in range(1, max_layers + 1):
        mem = memory(spec_at(n))
        if mem.total - mem.buffers <= FIT_FRACTION * capacity_bytes:
            best = n
        else:
            break
    if best == 0:
        raise GpuValidationError("not even one layer of this model fits this GPU at this sequence length")
    return best


def _mixed_precision(model):
    """fp32 main grads + fp32 master weights + AdamW (the planner's 18 bytes/param); returns step()."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    main = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    master = [p.detach().float().clone().requires_grad_(True) for p in params]
    for p, g in zip(params, main):
        def fold(param, g=g):                    # Megatron DDP's hook: main_grad += grad; grad = None
            g.add_(param.grad)
            param.grad = None
        p.register_post_accumulate_grad_hook(fold)
    for m, g in zip(master, main):
        m.grad = g
    opt = torch.optim.AdamW(master, lr=1e-5, weight_decay=0.0, foreach=False)

    def step() -> None:
        opt.step()
        with torch.no_grad():
            for p, m, g in zip(params, master, main):
                p.copy_(m)
                g.zero_()
    return step


def _timed_layout(spec, steps: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Build on DEVICE, warm up 2 steps, time `steps` (median); peak allocator memory over the timed steps."""
    import torch

    from soraplan.models.build import build_model
    from soraplan.models.loss import synthetic_batch, training_loss

    torch.cuda.reset_peak_memory_stats()
    model = build_model(spec, device=DEVICE, seed=0)
    model.train()
    step_opt = _mixed_precision(model)
    g = torch.Generator().manual_seed(0)
    batch = synthetic_batch(spec, 1, DEVICE, g)
    fb_times, step_times, peaks = [], [], []
    for i in range(2 + steps):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with sdpa_pinned():
            loss = training_loss(model, batch, generator=g)
            loss.backward()
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        step_opt()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        del loss
        if i >= 2:
            fb_times.append(t1 - t0)
            step_times.append(t2 - t0)
            peaks.append(torch.cuda.max_memory_allocated())
        progress(f"layers={spec.model.layers} recompute={spec.parallel.recompute} step {i + 1}/{2 + steps}"
                 f"{'' if i >= 2 else ' (warm-up)'}: {t2 - t0:.3f} s, peak "
                 f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    del model, batch, step_opt
    fb_times.sort()
    step_times.sort()
    return {"fwd_bwd_s": fb_times[len(fb_times) // 2], "step_s": step_times[len(step_times) // 2],
            "max_memory_allocated": max(peaks)}


def _fit_and_time(spec_at: Callable[[int], Any], max_layers: int, capacity: float, steps: int,
                  progress: Callable[[str], None]) -> tuple[Any, dict[str, Any], int, list[dict[str, Any]]]:
    """Time the most layers that fit, backing off by 25 % per out-of-memory error.

    Returns:
        (spec run, measurements, layers the planner said fit, back-off records [{"layers", "error"}]).
    """
    import torch

    planned = n = layers_that_fit(spec_at, max_layers, capacity)
    backoff: list[dict[str, Any]] = []
    for _ in range(OOM_RETRIES + 1):
        spec = spec_at(n)
        release_memory()
        progress(f"layers={n} recompute={spec.parallel.recompute}: building (planner: {planned} fit)")
        error = None
        try:
            return spec, _timed_layout(spec, steps, progress), planned, backoff
        except torch.cuda.OutOfMemoryError as e:
            error = str(e).strip().splitlines()[0][:300] if str(e).strip() else "out of memory"
        # Outside the except block: the traceback, which holds the failed model, is gone.
        release_memory()
        backoff.append({"layers": n, "error": error})
        progress(f"out of memory at {n} layers (the planner said {planned} fit): retrying with fewer")
        if n == 1:
            break
        n = max(1, int(n * 0.75))
    raise GpuValidationError(f"out of memory even at {n} layers, after {len(backoff)} tries "
                             f"({', '.join(str(b['layers']) for b in backoff)} layers)")


def _bench(fn: Callable[[], Any], repeats: int = 10) -> float:
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def microbench(spec, peak_flops: float) -> dict[str, float]:
    """bf16 GEMM of the fc1 shape [S, h] x [h, f] and flash SDPA fwd+bwd at [1, a, S, d]: achieved/peak."""
    import torch
    import torch.nn.functional as F

    s, h, f, a = spec.seq_len, spec.model.hidden, spec.model.ffn, spec.model.heads
    x = torch.randn(s, h, device=DEVICE, dtype=torch.bfloat16)
    w = torch.randn(h, f, device=DEVICE, dtype=torch.bfloat16)
    gemm_s = _bench(lambda: x @ w)
    gemm = 2 * s * h * f / gemm_s / peak_flops
    del x, w
    q, k, v = (torch.randn(1, a, s, h // a, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))

    def attn() -> None:
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
            o = F.scaled_dot_product_attention(q, k, v)
        o.backward(torch.ones_like(o))

    attn_s = _bench(attn, repeats=5)
    attention = attention_efficiency(spec, attn_s, peak_flops)
    del q, k, v
    return {"gemm_efficiency": gemm, "gemm_s": gemm_s, "attention_efficiency": attention, "attention_s": attn_s}


def attention_efficiency(spec, seconds: float, peak_flops: float) -> float:
    """Efficiency of one flash attention forward + backward over the spec's S tokens at width h, in the step
    model's convention (`soraplan.planner.step.TRAIN_FLOPS_PER_FORWARD`: 3 x the forward's 4 S^2 h FLOPs;
    the backward's QK^T recomputation is work the kernel does, not FLOPs it is credited with).

    Args:
        spec: the spec whose sequence length and hidden width were benchmarked.
        seconds: measured time of forward + backward.
        peak_flops: the GPU's dense peak, FLOP/s.
    Returns:
        achieved / peak, the number the step model divides attention FLOPs by.
    """
    from soraplan.planner.step import TRAIN_FLOPS_PER_FORWARD

    s, h = spec.seq_len, spec.model.hidden
    return TRAIN_FLOPS_PER_FORWARD * 4 * s * s * h / seconds / peak_flops


def _clip(eff: float) -> float:
    """An efficiency the loader accepts: at most 1 (a measurement above peak is reported in `measured`)."""
    return min(eff, 1.0)


def run(user_spec=None, steps: int = 5, progress: Callable[[str], None] = lambda s: None,
        on_result: Callable[[dict[str, Any]], None] = lambda r: None) -> dict[str, Any]:
    """Measure on the visible GPU.

    Args:
        user_spec: the spec to measure (its width, sequence and at most its layers), or None for the 6B.
        steps: timed training steps per layout (after 2 warm-up steps).
        progress: receives one line per step, build, out-of-memory back-off and benchmark.
        on_result: receives the result so far after every layout and after the microbenchmarks.
    Returns:
        {"rows": [Row], "calibration": {...}, "complete": True}; partial results have "complete": False.
    """
    import torch

    if steps < 1:
        raise GpuValidationError(f"--steps: at least 1 timed step, got {steps}")
    from soraplan.planner.flops import flops
    from soraplan.planner.hardware import resolve_gpu
    from soraplan.planner.memory import memory
    from soraplan.planner.step import op_efficiency, step_time

    from .measure_compare import Row

    device_name = torch.cuda.get_device_name()
    gpu = planner_gpu_name(device_name)
    peak = resolve_gpu(gpu).peak_tflops * 1e12
    capacity = torch.cuda.get_device_properties(0).total_memory
    max_layers = user_spec.model.layers if user_spec is not None else 40
    rows: list = []
    measured: dict[str, Any] = {"device_memory_bytes": capacity, "peak_tflops": peak / 1e12, "sdpa": SDPA_RECORD,
                                "torch": torch.__version__, "steps": steps}
    effs = []
    specs: dict[str, Any] = {}

    def result(complete: bool) -> dict[str, Any]:
        gemm = _clip(measured["microbench"]["gemm_efficiency"]) if "microbench" in measured else None
        attn = _clip(measured["microbench"]["attention_efficiency"]) if "microbench" in measured else None
        cal = calibration_record(gpu, device_name, _clip(effs[0]), gemm, attn, measured) if effs else None
        return {"rows": list(rows), "calibration": cal, "complete": complete}

    for recompute in ("none", "full"):
        spec, m, planned_layers, backoff = _fit_and_time(lambda n: gpu_spec(n, recompute, gpu, user_spec),
                                                         max_layers, capacity, steps, progress)
        release_memory()                     # this layout's model must not count in the next one's peak
        specs[recompute] = spec
        name = f"{spec.model.name} width, {spec.model.layers} layers, {spec.seq_len:,} tokens, recompute {recompute}"
        mem = memory(spec)
        planned = mem.total - mem.buffers
        hw_flops = flops(spec).hardware
        achieved = hw_flops / m["fwd_bwd_s"]
        eff = achieved / peak
        effs.append(eff)
        st = step_time(spec)
        oe = op_efficiency(spec)
        predicted_tflops = hw_flops / st.compute_s / 1e12
        rows += [
            Row(name, "layers run (predicted: the planner's fit in 85 % of memory)", spec.model.layers,
                planned_layers, None, "layers"),
            Row(name, "max_memory_allocated vs planned (no buffer allowance)", m["max_memory_allocated"], planned,
                GPU_MEMORY_TOL, "B"),
            Row(name, "forward+backward time (predicted: step model compute)", m["fwd_bwd_s"], st.compute_s,
                None, "s"),
            Row(name, f"step time (planner at GEMM {oe.gemm:.2f}, attention {oe.attention:.2f})",
                m["step_s"], st.time_s, None, "s"),
            Row(name, "achieved TFLOP/s (hardware FLOPs; predicted: step model)", achieved / 1e12,
                predicted_tflops, None, "TFLOP/s"),
        ]
        measured[f"recompute_{recompute}"] = {
            "layers": spec.model.layers, "layers_planned": planned_layers, "oom_backoff": backoff,
            "tokens": spec.seq_len, **m, "planned_bytes": planned, "hardware_flops": hw_flops,
            "achieved_tflops": achieved / 1e12, "predicted_tflops": predicted_tflops, "efficiency": eff,
            "predicted_compute_s": st.compute_s, "predicted_step_s": st.time_s,
            "planner_gemm_efficiency": oe.gemm, "planner_attention_efficiency": oe.attention}
        on_result(result(False))
    progress("microbenchmarks: bf16 GEMM and flash attention")
    measured["microbench"] = microbench(gpu_spec(1, "none", gpu, user_spec), peak)
    release_memory()
    rows.append(held_out_row(result(False)["calibration"], specs["full"], measured["recompute_full"]["step_s"]))
    # the calibration's efficiency is the no-recompute layout's: the planner counts recompute in `hardware`
    out = result(True)
    on_result(out)
    return out
