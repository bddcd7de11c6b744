"""The whole `soraplan validate --device cuda` path on CPU with CUDA stubbed (benchmarks/gpu_rehearsal.py):
progress on stderr under --json, the OOM back-off, partial and final JSON, the calibration file the planner
loads; and the import closure of that path against the carried wheels and the GPU machine's image."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu_wheels  # noqa: E402

TINY = ["--frames", "16", "--res", "64", "--latent-channels", "4", "--text-tokens", "8", "--text-dim", "32",
        "--layers", "2", "--hidden", "64", "--heads", "4", "--ffn-hidden", "256", "--precision", "bf16"]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    cmd = [sys.executable, str(BENCH / "gpu_rehearsal.py"), "--oom-once", "--modules-out", str(out / "modules.json"),
           "--", "--json", "--steps", "1", "--results-out", str(out / "validate_gpu.json"),
           "--calibration-out", str(out / "calibration.json"), *TINY]
    r = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=600,
                       env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(out)})
    return out, r


pytestmark = [pytest.mark.megatron, pytest.mark.slow]


def test_json_on_stdout_equals_the_results_file(rehearsal):
    out, r = rehearsal
    doc = json.loads(r.stdout)
    saved = json.loads((out / "validate_gpu.json").read_text())
    assert doc["complete"] is True and saved["complete"] is True
    assert {k: v for k, v in doc.items() if k != "machine"} == {k: v for k, v in saved.items() if k != "machine"}
    assert r.returncode == (0 if doc["ok"] else 1), r.stderr[-3000:]
    assert not list(out.glob(".*.tmp*")), "a temp file was left behind"


def test_rows_compare_memory_time_and_tflops_with_the_planner(rehearsal):
    from gpu_rehearsal import STUB_PEAK_BYTES

    doc = json.loads(rehearsal[1].stdout)
    rows = doc["rows"]
    assert len(rows) == 11     # 5 per layout: layers, memory, forward+backward, step, TFLOP/s; + the held-out row
    held = [r for r in rows if "held out" in r["quantity"]]
    assert len(held) == 1 and held[0]["tolerance"] == 0.15 and "recompute full" in held[0]["config"]
    mem = [r for r in rows if r["quantity"].startswith("max_memory_allocated")]
    assert [r["measured"] for r in mem] == [STUB_PEAK_BYTES] * 2 and all(r["tolerance"] == 0.10 for r in mem)
    assert all(r["predicted"] > 0 for r in rows if not r["quantity"].startswith("layers"))
    assert doc["failed"] == sum(1 for r in rows if not r["ok"])
    tflops = [r for r in rows if r["quantity"].startswith("achieved TFLOP/s")]
    assert len(tflops) == 2 and all(r["measured"] > 0 and r["predicted"] > 0 for r in tflops)


def test_oom_back_off_is_logged_and_recorded(rehearsal):
    _, r = rehearsal
    assert "out of memory at 2 layers (the planner said 2 fit): retrying with fewer" in r.stderr
    measured = json.loads(r.stdout)["calibration"]["measured"]
    none, full = measured["recompute_none"], measured["recompute_full"]
    assert none["layers_planned"] == 2 and none["layers"] == 1
    assert [b["layers"] for b in none["oom_backoff"]] == [2] and "out of memory" in none["oom_backoff"][0]["error"]
    assert full["layers"] == full["layers_planned"] == 2 and full["oom_backoff"] == []
    layer_rows = [x for x in json.loads(r.stdout)["rows"] if x["quantity"].startswith("layers run")]
    assert [(x["measured"], x["predicted"]) for x in layer_rows] == [(1, 2), (2, 2)]


def test_progress_goes_to_stderr_under_json(rehearsal):
    err = rehearsal[1].stderr
    assert "layers=1 recompute=none step 3/3" in err and "layers=2 recompute=full step 3/3" in err
    assert err.count("results so far written (partial)") == 2 and err.count("results so far written (complete)") == 1
    assert "gpu:" not in rehearsal[1].stdout


def test_calibration_file_is_what_the_planner_loads(rehearsal):
    from soraplan.planner.step import load_calibration

    out, r = rehearsal
    cal = json.loads((out / "calibration.json").read_text())
    assert cal == json.loads(r.stdout)["calibration"]
    loaded = load_calibration(str(out / "calibration.json"), "h200")
    # full precision: a CPU's efficiency against an H200's peak is tiny, and must not round to 0.0
    assert loaded["efficiency"] == cal["measured"]["recompute_none"]["efficiency"] and 0 < loaded["efficiency"] < 1e-3
    assert loaded["gemm"] == cal["measured"]["microbench"]["gemm_efficiency"] and 0 < loaded["attention"] <= 1
    assert cal["measured"]["sdpa"]["self_attention"] == "FLASH_ATTENTION"
    assert cal["measured"]["sdpa"]["cross_attention_masked"] == "EFFICIENT_ATTENTION"


def _closure(out: Path) -> dict:
    return json.loads((out / "modules.json").read_text())


def _image() -> set[str]:
    lines = (BENCH / "gpu_machine_packages.txt").read_text().splitlines()
    return {gpu_wheels.normalize(ln.strip()) for ln in lines if ln.strip() and not ln.startswith("#")}


def test_every_imported_package_is_on_the_image_or_carried(rehearsal):
    out, _ = rehearsal
    dists = {gpu_wheels.normalize(d) for ds in _closure(out)["distributions"].values() for d in ds} - {"soraplan"}
    pins = set(gpu_wheels.read_pins())
    assert {"megatron-core", "pydantic", "pydantic-core", "torch", "einops"} <= dists
    assert dists - _image() - pins == set(), "imported, but neither preinstalled on the GPU machine nor carried"
    assert pins - dists == set(), "carried, but the GPU path never imports it"


def test_gpu_validate_names_only_what_the_path_imports(rehearsal):
    out, _ = rehearsal
    text = (BENCH / "gpu_validate.sh").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("IMPORTS="))
    names = line.split("=", 1)[1].strip('"').split()
    closure = _closure(out)
    assert set(names) >= {"torch", "megatron.core", "pydantic"}
    for name in names:
        assert name.split(".")[0] in closure["modules"], f"gpu_validate.sh checks {name}, which the path never imports"
    imported_dists = {gpu_wheels.normalize(d) for ds in closure["distributions"].values() for d in ds}
    for name in names:
        assert any(gpu_wheels.normalize(d) in imported_dists for d in closure["distributions"][name.split(".")[0]])
    assert "fvcore" not in text.lower()
    installs = [ln for ln in text.splitlines() if "-m pip install" in ln and not ln.lstrip().startswith("#")]
    assert installs and all("--no-index" in ln and "--no-deps" in ln and "--target" in ln for ln in installs)
