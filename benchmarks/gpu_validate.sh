#!/usr/bin/env bash
# One-shot GPU validation (issue C): `soraplan validate --device cuda` on the visible GPU.
#
# Measures, at the 6B width and the full 30,720 tokens (bf16, SDPA flash), max_memory_allocated of a
# training step with as many layers as fit (recompute none and full) against the planner, the step time and
# achieved TFLOP/s, GEMM/attention microbenchmarks, and writes the calibration JSON the planner loads.
# About 2-3 minutes on an H100/H200 once the packages are in place. Never touches the network:
#   WHEELS=dir   a directory of wheels (megatron-core, einops, typer, rich, pydantic, PyYAML, fvcore...) to
#                install from when they are missing (megatron-core 0.16 wants Python >= 3.12 there).
# Results go to $OUT (the device tool's output folder) or ./gpu-validate-out:
#   nvidia-smi.csv, env.txt, validate_gpu.json (rows + calibration), calibration.json, validate_gpu.log
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-validate-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
{ "$PY" --version; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; } \
    > "$OUT/env.txt" 2>&1 || { echo "error: python/torch not usable here (see $OUT/env.txt)" >&2; exit 2; }

missing=$("$PY" - <<'PYEOF'
import importlib.util
mods = {"megatron.core": "megatron-core", "einops": "einops", "typer": "typer", "rich": "rich",
        "pydantic": "pydantic", "yaml": "PyYAML", "fvcore": "fvcore"}
print(" ".join(pkg for mod, pkg in mods.items() if importlib.util.find_spec(mod.split(".")[0]) is None
               or (mod == "megatron.core" and importlib.util.find_spec("megatron.core") is None)))
PYEOF
)
if [ -n "$missing" ]; then
    if [ -z "${WHEELS:-}" ]; then
        echo "error: missing packages ($missing): carry their wheels and set WHEELS=dir" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" $missing
fi
"$PY" -c "import soraplan.models" 2>/dev/null || "$PY" -m pip install -q --no-deps --no-index --no-build-isolation -e .

rc=0
timeout 540 "$PY" -m soraplan validate --device cuda --json --calibration-out "$OUT/calibration.json" \
    > "$OUT/validate_gpu.json" 2> "$OUT/validate_gpu.log" || rc=$?
tail -n 20 "$OUT/validate_gpu.log" >&2 || true
"$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); [print(f\"{r['config'][:60]:60s} {r['quantity'][:50]:50s} {r['measured']:.4g} {r['predicted'] if r['predicted'] is not None else '-'} {'ok' if r['ok'] else 'FAIL'}\") for r in d['rows']]; print('calibration', d['calibration']['gpu'], d['calibration']['efficiency'])" "$OUT/validate_gpu.json" || true
exit $rc
