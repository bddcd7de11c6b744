"""The package's import graph has no cycle, and the planner imports no heavy framework.

Every module under the package folders is parsed (not imported): each `import` / `from ... import` anywhere in
the file, including inside functions, is an edge to the package module it names. Folder X is the package
`soraplan.X`; relative imports are resolved against the importing module's package. `from pkg import name`
is an edge to `pkg.name` when that is a module, else to `pkg` (its `__init__`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("cli", "planner", "models", "validation", "launch", "templates", "soraplan")
HEAVY = ("torch", "megatron", "plotly", "kubernetes", "submitit")


def module_name(path: Path) -> str:
    """soraplan.X.y for ROOT/X/y.py (soraplan.X for X/__init__.py; soraplan for soraplan/__init__.py)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "soraplan":
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["soraplan", *parts])


def package_modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            mods[module_name(path)] = path
    return mods


def imported_names(path: Path, name: str) -> set[str]:
    """Absolute dotted names imported anywhere in the file: `import a.b` gives a.b; `from a import b` gives
    a.b (a module, or an attribute of a: see `resolve`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def resolve(imported: str, mods: dict[str, Path]) -> str | None:
    """The package module an imported name loads: itself when it is a module, else the module that holds it."""
    if imported in mods:
        return imported
    owner = imported.rpartition(".")[0]
    return owner if owner in mods else None


def import_graph() -> dict[str, set[str]]:
    mods = package_modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for imp in imported_names(path, name):
            target = resolve(imp, mods)
            if target and target != name:
                graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}            # 1: on the stack, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = todo.pop(0)
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph[nxt])))
    return None


def test_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph()
    # cli/plan.py imports the planner inside its command function and its view with a relative import
    assert "soraplan.planner.plan" in graph["soraplan.cli.plan"]
    assert "soraplan.cli.plan_view" in graph["soraplan.cli.plan"]
    assert "soraplan.planner.spec" in graph["soraplan.planner.estimate"]


def test_find_cycle_reports_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("name", sorted(m for m in package_modules() if m.startswith("soraplan.planner")))
def test_planner_imports_no_heavy_framework(name: str) -> None:
    path = package_modules()[name]
    heavy = sorted(i for i in imported_names(path, name) if i.split(".")[0] in HEAVY)
    assert not heavy, f"{path.relative_to(ROOT)} imports {', '.join(heavy)}"
