"""The static type check's import tree (.ci/typecheck): built from pyproject.toml's package-dir, one link per
package, so mypy resolves every `soraplan.X` to the checkout's X/ folder and sees each file once.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _typecheck_module():
    loader = importlib.machinery.SourceFileLoader("ci_typecheck", str(ROOT / ".ci" / "typecheck"))
    spec = importlib.util.spec_from_loader("ci_typecheck", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_every_package_maps_to_its_folder(tmp_path):
    tc = _typecheck_module()
    dirs = tc.package_dirs(ROOT / "pyproject.toml")
    tc.build_tree(ROOT, tmp_path / "tree")
    top = tmp_path / "tree" / "soraplan"
    assert {p.name for p in top.iterdir() if p.is_dir()} == {n.split(".")[1] for n in dirs if n != "soraplan"}
    for name, folder in dirs.items():
        linked = top if name == "soraplan" else top / name.split(".")[1]
        for src in (ROOT / folder).glob("*.py"):
            assert (linked / src.name).resolve() == src.resolve(), (name, src.name)
    assert {p.name for p in top.glob("*.py")} == {p.name for p in (ROOT / dirs["soraplan"]).glob("*.py")}


def test_mypy_reads_the_tree_it_builds():
    import tomllib

    tc = _typecheck_module()
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["mypy_path"] == tc.TREE.relative_to(tc.ROOT).as_posix()
    assert set(tc.CHECKED) >= {"soraplan.planner", "soraplan.launch", "soraplan.cli"}
