"""The shape of the package: imports run downward through the layers and never in a circle, and
no module grows past about 300 lines.  Read from the source (ast), so lazy imports count too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gpuhil"

#: The layers, bottom first: a module may import from its own layer and the ones below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("gpuhil", "gpuhil.errors", "gpuhil.symbols", "gpuhil.pids", "gpuhil.patterns", "gpuhil._"),
    ("gpuhil.devices", "gpuhil.protocol"),
    ("gpuhil.raw", "gpuhil.attempts", "gpuhil.agent"),
    ("gpuhil.machine", "gpuhil.qtest", "gpuhil.nested"),
    ("gpuhil.gating", "gpuhil.host"),
    ("gpuhil.lab",),
    ("gpuhil.handles", "gpuhil.outcomes", "gpuhil.bringup", "gpuhil.blob_traces"),
    ("gpuhil.report", "gpuhil.pytestplugin", "gpuhil.cli", "gpuhil.fuzz_command"),
)
#: "About 300": a tenth over is tolerated, not more.
MAX_LINES = 330


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int:
    best, rank = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            hit = name == prefix or name.startswith(prefix + ".") or (
                prefix.endswith("_") and name.startswith(prefix))
            if hit and len(prefix) > best:
                best, rank = len(prefix), index
    if rank < 0:
        raise AssertionError(f"{name} is in no layer of tests/test_layers.py")
    return rank


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (annotations only, never imported)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) \
                    and child.test.id == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports(name: str, path: Path) -> set[str]:
    """The gpuhil modules ``name`` imports (``from gpuhil.x import y`` counts y when it is a
    module)."""
    known = modules()
    out = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("gpuhil"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gpuhil"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    return {name: imports(name, path) for name, path in modules().items()}


def test_every_module_is_in_a_layer():
    """Each module of gpuhil has a layer (a new folder must be placed deliberately)."""
    for name in modules():
        layer_of(name)


def test_imports_run_downward():
    """No module imports from a layer above its own (the device layer knows no lab, the lab no
    pytest)."""
    upward = [f"{name} (layer {layer_of(name)}) imports {dep} (layer {layer_of(dep)})"
              for name, deps in graph().items() for dep in sorted(deps)
              if dep.split(".")[0] == "gpuhil" and layer_of(dep) > layer_of(name)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    """The gpuhil import graph has no cycle (a submodule importing its own package's
    ``__init__``, which imports the submodule, is one)."""
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_size(name: str):
    """A module stays readable in one sitting (about 300 lines)."""
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines"
