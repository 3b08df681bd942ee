"""The package's layers point one way: values <- engine <- capture <- adapters <- tools.

Each module may import from its own layer or any layer below, never above; adapters never
import each other; no module imports another's private (underscore) names; no cycles.
Running this file prints the import graph: ``.venv/bin/python tests/unit/test_layers.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "plugin" / "langchain_label_studio"

#: Layer of each module (``outbox`` stands for the outbox package and its modules).
LAYERS: dict[str, int] = {
    **dict.fromkeys(
        [
            "record", "messages", "sanitize", "redact", "task", "label_config", "project", "settings",
            "identity", "urls", "gil", "metrics", "state_dir", "feedback", "version",
        ],
        0,
    ),  # values: plain data and pure functions
    **dict.fromkeys(["outbox", "client", "delivery", "pipeline", "project_setup", "trace_links"], 1),  # engine
    **dict.fromkeys(["capture", "challenger", "prometheus"], 2),  # capture core
    **dict.fromkeys(["middleware", "graph", "langgraph_server", "handler"], 3),  # framework adapters
    **dict.fromkeys(["cli", "operations", "export", "local"], 4),  # tools
    "__init__": 5,
}
ADAPTERS = {name for name, layer in LAYERS.items() if layer == 3}


def module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return "outbox" if rel.parts[0] == "outbox" else rel.stem


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names imported) for each import of another module of the package."""
    found = []
    inside_outbox = path.parent.name == "outbox"
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = node.module or ""
        if inside_outbox and node.level == 1:
            target = "outbox"
        else:
            target = base.split(".")[0] or "__init__"
        names = [alias.name for alias in node.names]
        if target == "__init__" and base == "":  # ``from . import x``: a module, or a name of the package
            found += [(n, []) if n in LAYERS else ("__init__", [n]) for n in names]
        else:
            found.append((target, names))
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_of(path)
        edges.setdefault(source, set())
        for target, _ in imports(path):
            if target != source:
                edges[source].add(target)
    return edges


def test_every_module_has_a_layer():
    assert set(graph()) <= set(LAYERS), set(graph()) - set(LAYERS)


def test_imports_point_down_the_layers():
    wrong = [
        f"{source} (layer {LAYERS[source]}) imports {target} (layer {LAYERS[target]})"
        for source, targets in graph().items()
        for target in targets
        if LAYERS[target] > LAYERS[source] or (source in ADAPTERS and target in ADAPTERS)
    ]
    assert not wrong, "\n".join(wrong)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_names_across_modules():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        for target, names in imports(path):
            wrong += [f"{module_of(path)} imports {target}.{n}" for n in names if _private(n)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            assert state.get(nxt) != 1, "cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])


if __name__ == "__main__":
    for source, targets in sorted(graph().items(), key=lambda item: (LAYERS.get(item[0], 9), item[0])):
        print(f"[{LAYERS.get(source, '?')}] {source:17} -> {', '.join(sorted(targets)) or '-'}")
