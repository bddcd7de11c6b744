"""`soraplan <command>` imports and builds only that command; help, version and completion see every command."""

import subprocess
import sys

import pytest

from soraplan.cli import COMMANDS, _command_of, build_app

PROBE = (
    "import sys\n"
    "from soraplan.cli import main\n"
    "try:\n"
    "    main({args!r})\n"
    "except SystemExit as e:\n"
    "    assert e.code in (0, None), e.code\n"
    "print('LOADED', sorted(m for m in sys.modules if m.startswith('soraplan.cli.')), file=sys.stderr)\n"
)


def _loaded(args: list[str]) -> str:
    r = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stderr.split("LOADED", 1)[1]


def test_estimate_loads_only_its_module():
    loaded = _loaded(["estimate", "--frames", "960", "--res", "256", "--tp", "8", "--json"])
    for other in ("launch", "plan", "report", "validate", "train", "runs", "profile", "doctor"):
        assert f"soraplan.cli.{other}'" not in loaded, other
    assert "soraplan.cli.estimate'" in loaded


def test_version_and_help_see_every_command():
    r = subprocess.run([sys.executable, "-m", "soraplan", "--help"], capture_output=True, text=True, timeout=120,
                       env={"COLUMNS": "200", "PATH": ""})
    assert r.returncode == 0, r.stderr
    for name in COMMANDS:
        assert name in r.stdout, name


@pytest.mark.parametrize("args, expected", [
    ([], None), (["--help"], None), (["--version"], None), (["estimate"], "estimate"), (["status", "x"], "status"),
    (["no-such-command"], None), (["estimate-"], None),
])
def test_command_of(args, expected, monkeypatch):
    monkeypatch.delenv("_SORAPLAN_COMPLETE", raising=False)
    assert _command_of(args) == expected


def test_completion_builds_the_whole_tree(monkeypatch):
    monkeypatch.setenv("_SORAPLAN_COMPLETE", "complete_bash")
    assert _command_of(["estimate"]) is None


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_alone_is_the_same_command(name):
    import typer

    whole = typer.main.get_command(build_app())
    alone = typer.main.get_command(build_app(name))
    siblings = [n for n, module in COMMANDS.items() if module == COMMANDS[name]]   # status, logs, cancel: one module
    assert sorted(alone.commands) == sorted(siblings)
    a, b = whole.commands[name], alone.commands[name]
    assert [p.name for p in a.params] == [p.name for p in b.params]
