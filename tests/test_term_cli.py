"""`soraplan --version`, the order of `--help`, shell completion, and `soraplan_version` in --json objects."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from soraplan import __version__
from soraplan.cli import ORDER, app

runner = CliRunner()


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout == f"soraplan {__version__}\n"


def test_help_lists_commands_in_the_order_a_user_works():
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    listed = [m.group(1) for m in re.finditer(r"^│ (\w+)\s{2,}", r.stdout, re.M)]
    expected = [n for n in ORDER if n in listed]
    assert listed == expected, listed
    assert listed[:10] == ["estimate", "plan", "report", "validate", "train", "launch", "status", "logs", "cancel",
                           "profile"]
    assert "doctor" in listed and "--install-completion" in r.stdout


def test_show_completion_prints_a_bash_script():
    script = Path(sys.executable).parent / "soraplan"          # the installed console script
    r = subprocess.run([str(script), "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "complete -o default -F _soraplan_completion soraplan" in r.stdout
    assert "_SORAPLAN_COMPLETE=complete_bash" in r.stdout and "COMP_WORDS" in r.stdout


def test_every_json_object_names_the_version():
    for args in (["estimate", "--frames", "960", "--res", "256", "--tp", "8", "--json"], ["estimate", "presets", "--json"],
                 ["doctor", "--json"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["soraplan_version"] == __version__


def test_completion_completes_command_names():
    import os

    script = Path(sys.executable).parent / "soraplan"
    env = dict(os.environ, _SORAPLAN_COMPLETE="complete_bash", COMP_WORDS="soraplan es", COMP_CWORD="1")
    r = subprocess.run([str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert "estimate" in r.stdout.split(), (r.stdout, r.stderr)
