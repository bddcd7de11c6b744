#!/usr/bin/env bash
# One-command GPU validation: `soraplan validate --device cuda` on the visible GPU, offline.
#
# Measures the 6B width at the full 30,720 tokens (bf16, SDPA pinned: flash for self-attention, the
# memory-efficient kernel for the masked cross-attention), micro-batch 1, with as many layers as the planner
# says fit (recompute none, then full): torch.cuda.max_memory_allocated against the planner's per-GPU memory,
# step time against the step model, achieved against predicted TFLOP/s, then GEMM/attention
# microbenchmarks; writes the calibration file the planner loads. About 2-3 minutes on an H100/H200 once
# set up; the validation itself is stopped after TIMEOUT_S (default 390 s), keeping what it measured.
#
# Never touches the network. The packages the GPU path imports and the machine lacks travel as wheels
# (benchmarks/fetch_gpu_wheels.sh fills .whl/ on a developer machine; the device tool carries it) and are
# installed with --no-index --no-deps into a target folder put first on PYTHONPATH; soraplan itself runs
# from this checkout (a folder of links built from pyproject.toml's package-dir), nothing is pip-installed
# into the image.
#   WHEELS=dir (.whl)  SITE=dir (/tmp/soraplan-site)  PYTHON=python3  TIMEOUT_S=390  STEPS=5
#
# Writes to $OUT (the device tool's output folder) or ./gpu-validate-out, five files:
#   nvidia-smi.txt     nvidia-smi, then name/memory/driver/clocks as CSV
#   env.txt            Python, torch/CUDA, and the version and location of every module the GPU path imports
#   gpu_validate.log   set-up, per-step progress lines (under --json too), OOM back-offs, summary
#   validate_gpu.json  rows (peak memory vs planned, step time vs step model, achieved vs predicted
#                      TFLOP/s, layers run vs planned) + calibration; rewritten after every layout
#                      ("complete": false until the end)
#   calibration.json   what `--calibration PATH` / hardware.calibration reads (efficiency after the first
#                      layout, GEMM and attention efficiencies after the microbenchmarks)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-validate-out}"
WHEELS="${WHEELS:-.whl}"
SITE="${SITE:-/tmp/soraplan-site}"
SRC="${SITE}-src"
PY="${PYTHON:-python3}"
TIMEOUT_S="${TIMEOUT_S:-390}"
STEPS="${STEPS:-5}"
# The modules `soraplan validate --device cuda` imports from outside the standard library and soraplan
# (tests/test_gpu_rehearsal.py checks each against what the CPU rehearsal of this command imports).
IMPORTS="torch megatron.core pydantic pydantic_core annotated_types typing_inspection typing_extensions einops typer yaml numpy packaging"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/gpu_validate.log"
: > "$LOG"
say() { echo "gpu_validate: $(date -u +%H:%M:%S) $*" | tee -a "$LOG" >&2; }
die() { say "error: $*"; exit 2; }

{ nvidia-smi; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit \
    --format=csv; } > "$OUT/nvidia-smi.txt" 2>&1 || say "nvidia-smi failed (see nvidia-smi.txt)"

export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
say "checking the carried wheels in $WHEELS against benchmarks/gpu_wheels.txt"
wheels=$("$PY" benchmarks/gpu_wheels.py check "$WHEELS" 2>>"$LOG") \
    || die "the wheel folder does not match the pins (run benchmarks/fetch_gpu_wheels.sh and carry .whl)"
say "installing $(echo "$wheels" | wc -l) wheels into $SITE (--no-index --no-deps)"
# shellcheck disable=SC2086
"$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    $wheels >>"$LOG" 2>&1 || die "pip install from the carried wheels failed (see the log)"

say "putting soraplan on the path from pyproject.toml's package-dir ($SRC)"
"$PY" - "$SRC" >>"$LOG" 2>&1 <<'PYEOF' || die "could not link the soraplan packages (see the log)"
import os, shutil, sys, tomllib
src = sys.argv[1]
shutil.rmtree(src, ignore_errors=True)
dirs = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"]
for package, folder in sorted(dirs.items()):
    if package == "soraplan":
        os.makedirs(os.path.join(src, "soraplan"))
        for name in os.listdir(folder):
            if name.endswith(".py"):
                os.symlink(os.path.abspath(os.path.join(folder, name)), os.path.join(src, "soraplan", name))
    else:
        os.symlink(os.path.abspath(folder), os.path.join(src, *package.split(".")))
print("linked", ", ".join(sorted(dirs)))
PYEOF
export PYTHONPATH="$SRC:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# From here Python runs in $SRC: run from the checkout, the current folder would come first on sys.path and
# its bare soraplan/ (no subpackages) would hide the linked one.
cd "$SRC" || die "no $SRC"

say "checking the imports: $IMPORTS"
"$PY" - $IMPORTS > "$OUT/env.txt" 2>>"$LOG" <<'PYEOF' || die "an import failed (see env.txt and the log)"
import importlib, importlib.metadata as md, platform, sys
print("python", platform.python_version(), sys.executable)
failed = []
for name in sys.argv[1:]:
    try:
        mod = importlib.import_module(name)
    except Exception as e:                      # one line per module, every failure listed
        failed.append(name)
        print(f"{name}: IMPORT FAILED: {type(e).__name__}: {e}")
        continue
    dist = {"yaml": "PyYAML", "megatron.core": "megatron-core"}.get(name, name.replace("_", "-"))
    try:
        version = md.version(dist)
    except md.PackageNotFoundError:
        version = getattr(mod, "__version__", "?")
    print(f"{name} {version} {getattr(mod, '__file__', '')}")
if failed:
    sys.exit(1)
import torch
print("torch cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "device", torch.cuda.get_device_name() if torch.cuda.is_available() else "-")
import soraplan.validation.measure_gpu
print("soraplan", soraplan.__version__, soraplan.__file__)
PYEOF
cat "$OUT/env.txt" >> "$LOG"

say "validating (timeout ${TIMEOUT_S} s, ${STEPS} timed steps per layout)"
rc=0
timeout "$TIMEOUT_S" "$PY" -m soraplan validate --device cuda --json --steps "$STEPS" \
    --results-out "$OUT/validate_gpu.json" --calibration-out "$OUT/calibration.json" >>"$LOG" 2>&1 || rc=$?
[ "$rc" = 124 ] && say "the validation ran past ${TIMEOUT_S} s: validate_gpu.json holds the layouts measured so far"
say "validation exit status $rc (0 all within tolerance, 1 a comparison out of tolerance, 2 refused)"
"$PY" - "$OUT/validate_gpu.json" 2>&1 <<'PYEOF' | tee -a "$LOG" >&2
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
    sys.exit(f"no results: {e}")
print("complete" if d["complete"] else "PARTIAL", "-", d["failed"], "comparisons out of tolerance")
def fmt(x, unit):
    return "-" if x is None else (f"{x / 2**30:.3f} GiB" if unit == "B" else f"{x:.4g} {unit}")
for r in d["rows"]:
    flag = "info" if r["tolerance"] is None else ("ok" if r["ok"] else "FAIL")
    print(f"{r['config'][:58]:58s} {r['quantity'][:58]:58s} {fmt(r['measured'], r['unit']):>16s} "
          f"{fmt(r['predicted'], r['unit']):>16s} {flag}")
c = d["calibration"] or {}
for layout in ("recompute_none", "recompute_full"):
    m = c.get("measured", {}).get(layout)
    if m:
        print(f"{layout}: {m['layers']} layers (planned {m['layers_planned']}), OOM back-off {m['oom_backoff']}")
print("calibration", c.get("gpu"), "efficiency", c.get("efficiency"), "gemm", c.get("gemm_efficiency"),
      "attention", c.get("attention_efficiency"))
PYEOF
exit "$rc"
