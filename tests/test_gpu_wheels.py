"""The carried wheel set of the GPU validation: pinned, fetchable, installable offline for Python 3.12, and
complete against what the GPU machine's image already holds. The scripts parse (`bash -n`)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu_wheels  # noqa: E402  (benchmarks/gpu_wheels.py: standard library only)

# the image's versions where its package list gives them (the device tool's KINDS.md, nvidia-h200)
IMAGE_VERSIONS = {"torch": "2.11.0", "numpy": "2.5.2"}
# the GPU machine: glibc-based x86_64 (pip matches each manylinux tag it is given, not the older ones)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")


def machine_packages() -> set[str]:
    lines = (BENCH / "gpu_machine_packages.txt").read_text().splitlines()
    return {gpu_wheels.normalize(ln.strip()) for ln in lines if ln.strip() and not ln.startswith("#")}


@pytest.mark.parametrize("script", ["gpu_validate.sh", "fetch_gpu_wheels.sh"])
def test_scripts_parse(script):
    r = subprocess.run(["bash", "-n", str(BENCH / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_pins_are_exact_single_and_not_preinstalled():
    pins = gpu_wheels.read_pins()
    assert pins["megatron-core"] == "0.16.1"
    assert set(pins) == {"megatron-core", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
                         "typing-extensions"}
    # carried only when the image lacks it, or (typing-extensions) when pydantic needs a newer one than it may hold
    assert set(pins) - machine_packages() == set(pins) - {"typing-extensions"}
    assert "fvcore" not in pins


def test_read_pins_refuses_ranges_and_doubles(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("pydantic>=2\n")
    with pytest.raises(ValueError, match="exact pin"):
        gpu_wheels.read_pins(f)
    f.write_text("pydantic==2.1\nPydantic==2.2\n")
    with pytest.raises(ValueError, match="twice"):
        gpu_wheels.read_pins(f)


def test_check_dir_wants_exactly_one_wheel_per_pin(tmp_path):
    pins = {"pydantic": "2.14.4", "typing-extensions": "4.16.0"}
    (tmp_path / "pydantic-2.14.4-py3-none-any.whl").write_bytes(b"")
    with pytest.raises(ValueError, match="typing-extensions==4.16.0: found nothing"):
        gpu_wheels.check_dir(tmp_path, pins)
    (tmp_path / "typing_extensions-4.16.0-py3-none-any.whl").write_bytes(b"")
    assert [p.name for p in gpu_wheels.check_dir(tmp_path, pins)] == [
        "pydantic-2.14.4-py3-none-any.whl", "typing_extensions-4.16.0-py3-none-any.whl"]
    (tmp_path / "pydantic-2.13.0-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "fvcore-0.1.5-py3-none-any.whl").write_bytes(b"")
    with pytest.raises(ValueError) as e:
        gpu_wheels.check_dir(tmp_path, pins)
    assert "pydantic==2.14.4" in str(e.value) and "fvcore: not pinned" in str(e.value)
    removed = gpu_wheels.prune(tmp_path, pins)
    assert sorted(p.name for p in removed) == ["fvcore-0.1.5-py3-none-any.whl", "pydantic-2.13.0-py3-none-any.whl"]
    assert len(gpu_wheels.check_dir(tmp_path, pins)) == 2


def test_gitignore_keeps_the_wheels_out_of_git():
    assert ".whl/" in (ROOT / ".gitignore").read_text().splitlines()
    r = subprocess.run(["git", "check-ignore", "-q", ".whl/x.whl"], cwd=ROOT)
    assert r.returncode == 0


def test_fetch_script_downloads_cp312_manylinux_binaries_without_dependencies():
    text = (BENCH / "fetch_gpu_wheels.sh").read_text()
    for flag in ("--no-deps", "--only-binary=:all:", "--python-version 3.12", "--implementation cp",
                 *PLATFORMS, 'DIR="${1:-.whl}"', "gpu_wheels.py prune", "gpu_wheels.py check"):
        assert flag in text, flag


def _requirements(whl: Path) -> list[str]:
    """Requires-Dist lines of a wheel whose marker holds on CPython 3.12 / Linux x86_64 with no extra."""
    import zipfile

    from packaging.requirements import Requirement

    env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    reqs = [Requirement(ln.split(":", 1)[1].strip()) for ln in lines if ln.startswith("Requires-Dist:")]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


@pytest.mark.slow
def test_fetched_wheels_install_offline_for_python_312(tmp_path):
    """Run the fetch script (the registry is reachable here), then install the folder the way the GPU
    machine does, as a pip dry run for CPython 3.12 with no index; every requirement of every carried wheel
    is carried (at a version it accepts) or preinstalled on the image."""
    from packaging.version import Version

    wheels = tmp_path / "whl"
    r = subprocess.run(["bash", str(BENCH / "fetch_gpu_wheels.sh"), str(wheels)], cwd=ROOT, capture_output=True,
                       text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stdout + r.stderr
    pins = gpu_wheels.read_pins()
    files = gpu_wheels.check_dir(wheels, pins)
    total = sum(p.stat().st_size for p in files)
    assert total < 16 * 2**20, f"{total} bytes: the set must stay well under the 64 MiB that travel"
    assert re.search(rf"6 wheels, {total} bytes", r.stdout)

    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull            # no configured index, find-links or constraints
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links", str(wheels),
           "--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:", "--no-deps",
           *[a for p in PLATFORMS for a in ("--platform", p)], "--target", str(tmp_path / "target"),
           *[f"{n}=={v}" for n, v in pins.items()]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    would = re.search(r"Would install (.*)", r.stdout)
    assert would, r.stdout
    assert sorted(gpu_wheels.normalize(w.rsplit("-", 1)[0]) + "==" + w.rsplit("-", 1)[1]
                  for w in would.group(1).split()) == sorted(f"{n}=={v}" for n, v in pins.items())

    image = machine_packages()
    for whl in files:
        for req in _requirements(whl):
            name = gpu_wheels.normalize(req.name)
            if name in pins:
                assert Version(pins[name]) in req.specifier, f"{whl.name} needs {req}, carried {pins[name]}"
            else:
                assert name in image, f"{whl.name} needs {req}: neither carried nor on the GPU machine"
                if name in IMAGE_VERSIONS:
                    assert Version(IMAGE_VERSIONS[name]) in req.specifier, f"{whl.name} needs {req}"
