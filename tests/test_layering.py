"""The package layout holds: no import cycle among stts_core modules, each package imports only from the
layers below it (data -> methods -> models -> pipeline -> train / analysis -> cli), the method package
imports no model family and no app code, and no module is longer than 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "stts_core"
# Lower numbers may not import higher ones. Top-level helper modules (timing, distributed) are layer 0;
# the `python -m stts_core.<verb>` shims at the top level are entry points and may import the cli.
LAYERS = {"data": 0, "timing": 0, "distributed": 0, "methods": 1, "models": 2, "pipeline": 3, "train": 4,
          "analysis": 4, "cli": 5}
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """stts_core modules `path` imports (names imported `from` a package count as that package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("stts_core"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("stts_core"))
    return found


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path, top_level_only) if m in modules and m != name}
            for name, path in modules.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_import_cycle_among_modules() -> None:
    graph = _graph(top_level_only=True)
    # A package's __init__ importing its own submodules is how packages re-export; it is not a cycle.
    graph = {m: {d for d in deps if not (m.startswith(d + ".") and graph.get(d))} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_packages_import_only_from_lower_layers() -> None:
    bad = []
    for module, deps in _graph(top_level_only=False).items():
        mine = _layer(module)
        if mine is None or module.endswith(".__main__"):  # `python -m` entry points may call the cli
            continue
        for dep in deps:
            theirs = _layer(dep)
            if theirs is not None and theirs > mine:
                bad.append(f"{module} imports {dep}")
    assert not bad, "\n".join(sorted(bad))


def test_methods_import_no_family_and_no_app() -> None:
    for path in (PACKAGE / "methods").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for forbidden in ("stts_core.models", "from app", "import app", "transformers"):
            assert forbidden not in text, f"{path.relative_to(ROOT)} mentions {forbidden}"


def test_no_module_is_longer_than_600_lines() -> None:
    long = [f"{p.relative_to(ROOT)}: {n}" for p in [*PACKAGE.rglob("*.py"), *(ROOT / "app").rglob("*.py")]
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, "\n".join(long)


def test_the_report_never_imports_the_runner() -> None:
    assert not any(d.endswith("analysis.runner") for d in _imports(PACKAGE / "analysis" / "report.py", False))
