"""The import graph keeps the layers of docs/architecture.md: no cycles, and no module importing from a
layer above its own (imports inside functions count too)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The layers, bottom first; each part may import only from its own part and from the layers below it.
LAYERS = [
    ["mambapoc", "mambapoc.errors"],
    ["mambapoc.fsutil", "mambapoc.schema", "mambapoc.resources", "mambapoc.results", "mambapoc.kernels"],
    ["mambapoc.envinfo", "mambapoc.models", "mambapoc.ingest", "mambapoc.tasks"],
    ["mambapoc.bench", "mambapoc.report", "mambapoc.train"],
    ["mambapoc.paper"],
    ["mambapoc.recipe"],
    ["mambapoc.pipeline"],
    ["mambapoc.cli"],
    ["mambapoc.__main__"],
]
LAYER = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def _modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "mambapoc").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in (ROOT / "kernels").glob("*.py"):  # installed as mambapoc.kernels
        found["mambapoc.kernels" + ("" if path.stem == "__init__" else f".{path.stem}")] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # `from pkg import module` depends on the module; `from module import name` on the module.
                target = f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                if target in modules:
                    out.add(target)
    return out - {name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_every_module_belongs_to_a_layer():
    assert sorted({_part(m) for m in _graph()} - set(LAYER)) == []


def test_no_module_imports_from_a_layer_above_or_beside_its_own():
    upward = sorted(f"{a} -> {b}" for a, targets in _graph().items() for b in targets
                    if _part(a) != _part(b) and LAYER[_part(b)] >= LAYER[_part(a)])
    assert upward == []


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the current path, 2 done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state[nxt] == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif state[nxt] == 0:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            visit(node, [node])
    return cycles


def test_the_import_graph_has_no_cycle():
    assert _cycles(_graph()) == []


def test_the_checks_can_fail():
    # They pass honestly only if the walker finds imports, those inside functions included, and the
    # cycle search finds a cycle.
    graph = _graph()
    assert "mambapoc.results" in graph["mambapoc.report.load"]
    assert "mambapoc.kernels" in graph["mambapoc.models.mamba"]
    assert "mambapoc.models.registry" in graph["mambapoc.bench.plan"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]
