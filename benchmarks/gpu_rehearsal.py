"""CPU rehearsal of the GPU validation: the whole `soraplan validate --device cuda` path with CUDA stubbed.

Usage:
    python benchmarks/gpu_rehearsal.py [--oom-once] [--modules-out FILE] -- VALIDATE_ARGS...

Runs `soraplan validate --device cuda VALIDATE_ARGS` in this process on CPU tensors: torch.cuda answers as
an NVIDIA H200 (`install_cuda_stubs`), the model and batches are placed on the CPU
(`measure_gpu.DEVICE = "cpu"`), and megatron-core gets its CPU shims and a one-process gloo group, set up
before CUDA is reported present. Everything else (spec, layer fit, OOM back-off, SDPA pinning, timing,
rows, partial and final JSON, calibration file) is the code the GPU runs. Pass a small spec (the tests do):
the 6B at 30,720 tokens does not fit a CPU.

--oom-once: the first training step raises torch.cuda.OutOfMemoryError (with the model alive in its
frame), which exercises the back-off. --modules-out: write the top-level names of every module imported
by the end of the run (with their distributions), one JSON object, for the import-closure check.
Exit status: the command's own.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any

DEVICE_NAME = "NVIDIA H200"
TOTAL_MEMORY_BYTES = 143_771 * 2**20       # nvidia-smi's 143771 MiB on the H200 this workplace lends
STUB_PEAK_BYTES = 1_234_567                 # what the stubbed max_memory_allocated answers


def install_cuda_stubs(oom_once: bool = False) -> dict[str, Any]:
    """Make torch.cuda answer as one GPU while every tensor stays on the CPU.

    Args:
        oom_once: the first torch.cuda.synchronize() raises torch.cuda.OutOfMemoryError.
    Returns:
        counters of the stubbed calls ({"synchronize": n, "empty_cache": n, ...}).
    """
    import torch

    from soraplan.models import parallel, shims
    from soraplan.validation import measure_gpu

    # megatron on CPU: its shims and a gloo process group, while torch still says there is no CUDA
    shims.apply_cpu_shims()
    parallel.initialize(tp=1)
    calls: dict[str, int] = {}

    def counted(name: str, value: Any = None, raise_first: bool = False):
        def stub(*args: Any, **kwargs: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            if raise_first and calls[name] == 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (rehearsal: raised by the stub)")
            return value
        return stub

    cuda = torch.cuda
    cuda.is_available = counted("is_available", True)
    cuda.device_count = counted("device_count", 1)
    cuda.get_device_name = counted("get_device_name", DEVICE_NAME)
    cuda.get_device_properties = counted("get_device_properties", types.SimpleNamespace(
        name=DEVICE_NAME, total_memory=TOTAL_MEMORY_BYTES, major=9, minor=0, multi_processor_count=132))
    cuda.synchronize = counted("synchronize", None, raise_first=oom_once)
    cuda.empty_cache = counted("empty_cache")
    cuda.reset_peak_memory_stats = counted("reset_peak_memory_stats")
    cuda.max_memory_allocated = counted("max_memory_allocated", STUB_PEAK_BYTES)
    cuda.memory_allocated = counted("memory_allocated", 0)
    cuda.manual_seed = counted("manual_seed")
    cuda.manual_seed_all = counted("manual_seed_all")
    measure_gpu.DEVICE = "cpu"
    return calls


def imported_modules() -> dict[str, Any]:
    """The imported modules by top-level name, and the distribution that installed each (when one did).

    A module is attributed through the folder it was loaded from: the first path component under a
    site-packages folder (so setuptools' vendored `jaraco`, loaded from setuptools/_vendor, counts as
    setuptools); modules of the standard library and built-ins have no distribution.
    """
    import importlib.metadata as md
    import site
    import sysconfig

    dist_of = md.packages_distributions()
    sites = sorted({*site.getsitepackages(), site.getusersitepackages(), sysconfig.get_paths()["purelib"],
                    sysconfig.get_paths()["platlib"]}, key=len, reverse=True)
    tops = sorted({name.split(".")[0] for name in list(sys.modules) if not name.startswith("_")})
    owners: dict[str, list[str]] = {}
    for top in tops:
        path = getattr(sys.modules.get(top), "__file__", None) or ""
        if not path:
            locations = getattr(getattr(sys.modules.get(top), "__spec__", None), "submodule_search_locations", None)
            path = next(iter(locations), "") if locations else ""
        root = next((s for s in sites if path.startswith(s.rstrip("/") + "/")), None)
        if root is None:
            owner = top if top in dist_of and not path else None       # e.g. an editable install's finder
        else:
            first = path[len(root.rstrip("/")) + 1:].split("/")[0]
            owner = first[:-3] if first.endswith(".py") else first
        if top == "soraplan" or (owner and owner in dist_of):
            owners[top] = sorted(set(dist_of.get(owner or top, ["soraplan"])))
    return {"modules": tops, "distributions": owners}


def main(argv: list[str]) -> int:
    """Parse the rehearsal's own flags, stub CUDA, run the CLI; returns its exit status."""
    if "--" not in argv:
        sys.stderr.write("usage: gpu_rehearsal.py [--oom-once] [--modules-out FILE] -- VALIDATE_ARGS...\n")
        return 2
    own, args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    oom_once = "--oom-once" in own
    modules_out = own[own.index("--modules-out") + 1] if "--modules-out" in own else None
    calls = install_cuda_stubs(oom_once)
    from soraplan.cli import app

    try:
        app(["validate", "--device", "cuda", *args])
        rc = 0
    except SystemExit as e:                 # the CLI always ends with SystemExit (its exit status)
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    sys.stderr.write(f"rehearsal: stubbed CUDA calls {json.dumps(calls, sort_keys=True)}\n")
    if modules_out:
        with open(modules_out, "w") as f:
            json.dump(imported_modules(), f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
