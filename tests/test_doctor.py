"""`soraplan doctor`: one line per check with its fix, --json, exit 1 when a required check fails, fast."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from soraplan.cli import app, doctor

runner = CliRunner()
NAMES = ["python", "torch", "megatron-core", "submitit", "kubernetes", "plotly", "diffusers", "gpu", "slurm", "k8s",
         "chromium"]


def test_json_lists_every_check_with_a_fix_for_what_is_missing():
    r = runner.invoke(app, ["doctor", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [c["name"] for c in out["checks"]] == NAMES
    assert out["ok"] is True and out["required"] == [] and out["soraplan_version"]
    for c in out["checks"]:
        assert c["detail"] and (c["ok"] or c["fix"]), c


def test_human_output_is_one_line_per_check(tmp_path):
    r = runner.invoke(app, ["doctor"], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(NAMES)
    for name, line in zip(NAMES, lines):
        assert line.split()[1] == name and line.split()[0] in ("ok", "missing")


def test_a_required_check_that_fails_exits_1(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    r = runner.invoke(app, ["doctor", "--check", "slurm", "--check", "python"], env={"PATH": str(empty), "COLUMNS": "300"})
    assert r.exit_code == 1, r.output
    assert "MISSING slurm" in r.stdout and "fix: apt-get install slurm-client" in r.stdout
    assert "required (slurm, python): slurm missing" in r.stdout
    r = runner.invoke(app, ["doctor", "--check", "python", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["failed"] == []


def test_unknown_check_is_a_one_line_error():
    r = runner.invoke(app, ["doctor", "--check", "slurmm"])
    assert r.exit_code == 2 and "--check: unknown check 'slurmm'" in r.stderr


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(doctor.EXTRAS, "no-such-dist-for-soraplan", ("k8s", "nothing"))
    c = doctor.check_package("no-such-dist-for-soraplan")
    assert not c.ok and c.fix == "pip install 'soraplan[k8s]'"
    assert doctor.check_package("plotly").ok


def test_kubernetes_api_that_answers_and_one_that_does_not(tmp_path, monkeypatch):
    from k8s_emulator import EmulatorThread

    em = EmulatorThread().start()
    try:
        monkeypatch.setenv("KUBECONFIG", str(em.kubeconfig(tmp_path / "kc")))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        c = doctor.check_k8s()
        assert c.ok and em.url in c.detail and "answers" in c.detail, c
    finally:
        em.stop()
    with socket.socket() as s:                 # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "dead").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n"
        "contexts: [{name: dead, context: {cluster: c}}]\nusers: []\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "dead"))
    t0 = time.monotonic()
    c = doctor.check_k8s()
    assert not c.ok and "does not answer" in c.detail and c.fix
    assert time.monotonic() - t0 < 5
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert "no kubeconfig" in doctor.check_k8s().detail


@pytest.mark.parametrize("version_py, cuda", [("cuda = '12.4'\n", "12.4"), ("cuda: Optional[str] = None\n", None),
                                              ("cuda: Optional[str] = '12.1'\n", "12.1")])
def test_torch_cuda_read_without_import(tmp_path, monkeypatch, version_py, cuda):
    pkg = tmp_path / "torch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('doctor must not import torch')\n")
    (pkg / "version.py").write_text(version_py)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert doctor._torch_cuda() == cuda


def test_fast_and_imports_nothing_heavy():
    code = ("import sys, time\nt0 = time.monotonic()\nfrom soraplan.cli import app\n"
            "try:\n    app(['doctor', '--json'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'megatron', 'plotly', 'kubernetes', 'submitit') if m in sys.modules]\n"
            "assert not heavy, heavy\nprint('SECONDS', time.monotonic() - t0, file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert float(r.stderr.split("SECONDS")[1]) < 10
