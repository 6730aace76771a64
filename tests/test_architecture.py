"""The house rules of the source tree, checked on the code itself:

* every import arrow between swinlab's packages points down the layers
  (``cli -> serve/export/report -> inference -> training -> data``, with
  ``factory -> weights -> models`` and the foundation ``io``, ``plots``,
  ``errors``, ``constants``, ``version`` below them), and modules import no
  cycle -- function-level imports included, so none can hide one;
* the foundation and ``models``/``data``/``weights`` import only what they
  are allowed to (models: the foundation's errors and constants only; data:
  plus io; weights: models and the foundation);
* no private torch APIs and no tensor version counters;
* no function is longer than 80 lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "swinlab"

#: component -> its layer (an import must go to a lower layer or stay inside the component).
LAYER = {
    "errors": 0, "constants": 0, "version": 0, "memory": 0,
    "io": 1, "plots": 1,
    "models": 2, "data": 2,
    "weights": 3,
    "factory": 4,
    "training": 5,
    "inference": 6,
    "export": 7, "report": 7, "serve": 8,
    "cli": 9, "__main__": 10, "__init__": 10,
}
#: components with a closed list of what they may import (besides themselves).
ALLOWED = {
    "errors": set(), "constants": set(), "version": set(), "memory": set(), "plots": set(),
    "io": {"errors", "constants"},
    "models": {"errors", "constants"},
    "data": {"errors", "constants", "io"},
    "weights": {"models", "io", "errors", "constants", "version"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """swinlab modules named by an import statement (a submodule when it is one, else the package)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "swinlab"]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "swinlab":
        return []
    names = [f"{target}.{a.name}" for a in node.names]
    subs = [n for n in names if n in MODULES]
    return subs if subs else [target]


def _imports() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets.update(t for t in _resolve(module, node, is_package) if t != module)
        graph[module] = targets
    return graph


GRAPH = _imports()


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_is_in_a_layer():
    assert {_component(m) for m in MODULES} <= set(LAYER)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    comp = _component(module)
    for target in GRAPH[module]:
        other = _component(target)
        if other == comp:
            continue
        assert LAYER[other] < LAYER[comp], f"{module} imports {target}: {comp} may not import {other} (upward)"
        if comp in ALLOWED:
            assert other in ALLOWED[comp], f"{module} imports {target}: {comp} may import only {ALLOWED[comp]}"


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH.get(m, ())):
            if t not in MODULES:
                continue
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_no_private_torch_apis():
    pattern = re.compile(r"torch\._C|torch\.ops\.aten|\._base\b|\._version\b")
    hits = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_no_function_longer_than_80_lines():
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
