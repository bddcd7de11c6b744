"""Packaging: a wheel maps planner/, models/, launch/, templates/ under soraplan.* and nothing else."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_has_only_the_soraplan_namespace(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("soraplan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"soraplan", next(t for t in tops if t.endswith(".dist-info"))}, tops
    for mod in ("soraplan/planner/spec.py", "soraplan/models/__init__.py", "soraplan/launch/ledger.py",
                "soraplan/templates/__init__.py", "soraplan/cli/estimate.py",
                "soraplan/validation/measure.py", "soraplan/validation/unet_presets/animatediff.json"):
        assert mod in names, mod
