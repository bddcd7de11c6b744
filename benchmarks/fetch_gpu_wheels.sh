#!/usr/bin/env bash
# Download, on a developer machine with a package registry, the wheels the GPU validation needs and the GPU
# machine lacks, into DIR (default .whl/, git-ignored): the exact pins of benchmarks/gpu_wheels.txt, CPython
# 3.12 manylinux x86_64 (the GPU machine's Python and processor), binary only, no dependency resolution (the
# pins are the whole set), one version each (wheels of other versions in DIR are removed).
#   benchmarks/fetch_gpu_wheels.sh [DIR]        PYTHON=... picks the Python whose pip downloads (python3)
# Then the device tool carries DIR with the working tree (`carry: [".whl"]`); see docs/validation.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-.whl}"
PY="${PYTHON:-python3}"
mkdir -p "$DIR"
read -r -a pins <<< "$("$PY" benchmarks/gpu_wheels.py pins)"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --dest "$DIR" "${pins[@]}"
"$PY" benchmarks/gpu_wheels.py prune "$DIR"
"$PY" benchmarks/gpu_wheels.py check "$DIR" > /dev/null
total=$(du -cb "$DIR"/*.whl | tail -n 1 | cut -f1)
ls -l "$DIR"/*.whl
echo "$(ls "$DIR"/*.whl | wc -l) wheels, $total bytes ($((total / 1048576)) MiB) in $DIR"
