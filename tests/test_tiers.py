"""The test tiers stay honest: every test conftest.SLOW names exists, and the daily tier's markers are declared."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import conftest

TESTS = Path(__file__).resolve().parent


def test_every_slow_name_is_a_test_function():
    for file, names in conftest.SLOW.items():
        tree = ast.parse((TESTS / file).read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
        assert names <= defined, (file, sorted(names - defined))


def test_daily_tier_markers_are_declared():
    ini = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    declared = {m.split(":")[0] for m in ini["markers"]}
    assert {"slow", "megatron", "slurm", "browser"} <= declared
