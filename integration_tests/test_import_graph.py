"""The import graph of the workspace's packages, read from the source (nothing is imported).

House rule 10: no import cycles between files, and dependencies point one way, arctic-vllm ->
arctic-runtime -> {arctic-suffix, arctic-drafters, arctic-kernels}; arctic-suffix needs no
torch and only arctic-vllm imports vllm. An import inside a function counts like one at the
top: a lazy import hides a cycle from Python, not from a reader. Also: each installed
package's metadata version is the ``__version__`` of its source, the one place it is written.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGES_DIR = Path(__file__).resolve().parent.parent / "packages"
# Distribution -> top-level module, in dependency order.
DISTRIBUTIONS = {
    "arctic-suffix": "arctic_suffix",
    "arctic-drafters": "arctic_drafters",
    "arctic-kernels": "arctic_kernels",
    "arctic-runtime": "arctic_runtime",
    "arctic-vllm": "arctic_vllm",
}
ARCTIC = frozenset(DISTRIBUTIONS.values())
# Top-level modules each package must never import (house style: arctic-vllm -> arctic-runtime
# -> {arctic-suffix, arctic-drafters, arctic-kernels}; only arctic-vllm imports vllm).
FORBIDDEN = {
    "arctic_suffix": {"torch", "vllm"} | (ARCTIC - {"arctic_suffix"}),
    "arctic_drafters": {"vllm", "arctic_runtime", "arctic_vllm"},
    "arctic_kernels": {"vllm", "arctic_runtime", "arctic_vllm"},
    "arctic_runtime": {"vllm", "arctic_vllm"},
    "arctic_vllm": set(),
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted, resolved to a file where it is one
    line: int

    def __str__(self) -> str:
        return f"{module_path(self.source)}:{self.line} imports {self.target}"


def discover_modules() -> dict[str, Path]:
    """Dotted name -> file, for every .py under packages/*/src (``__init__.py`` = package)."""
    modules = {}
    for src in sorted(PACKAGES_DIR.glob("*/src")):
        for path in sorted(src.rglob("*.py")):
            parts = path.relative_to(src).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = discover_modules()


def module_path(name: str) -> str:
    return str(MODULES[name].relative_to(PACKAGES_DIR.parent))


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def resolve_base(source: str, node: ast.ImportFrom) -> str:
    """The module ``from <base> import ...`` names, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    package = source.split(".") if is_package(source) else source.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def imports_of(source: str) -> Iterator[Import]:
    """Every import in the file, at any depth (functions, conditionals, try blocks).

    ``from pkg import name`` is an edge to ``pkg.name`` where that is a module of the
    workspace, else to ``pkg`` itself; importing ``a.b.c`` is an edge to ``a.b.c`` alone (the
    parent packages it runs first are not counted: a module importing its own package's
    sibling would otherwise always close a cycle through ``__init__``)."""
    tree = ast.parse(MODULES[source].read_text(), filename=str(MODULES[source]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(source, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_base(source, node)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(source, submodule if submodule in MODULES else base, node.lineno)


IMPORTS = [imp for name in MODULES for imp in imports_of(name)]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; the components in no particular order, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def file_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in IMPORTS:
        if imp.target in MODULES and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    return graph


def test_the_graph_covers_every_package() -> None:
    # A moved or renamed src/ tree would otherwise leave this test checking nothing.
    assert set(MODULES) >= ARCTIC
    assert {name.split(".")[0] for name in MODULES} == ARCTIC
    assert len(IMPORTS) > 100


def test_no_import_cycles_between_files() -> None:
    graph = file_graph()
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    edges = {(imp.source, imp.target): imp for imp in IMPORTS}
    report = []
    for cycle in cycles:
        members = set(cycle)
        report.append(
            "cycle: "
            + ", ".join(module_path(m) for m in cycle)
            + "".join(f"\n    {edges[(m, t)]}" for m in cycle for t in sorted(graph[m] & members))
        )
    assert not cycles, (
        "import cycles between files (move what both need into a module both import, or make "
        "the dependency one-way):\n" + "\n".join(report)
    )


def test_a_cycle_is_found() -> None:
    # The detector itself: a -> b -> c -> a is one component, d (importing a) is not in it.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    components = sorted(strongly_connected(graph))
    assert components == [["a", "b", "c"], ["d"], ["e"]]


def test_relative_imports_resolve_to_files() -> None:
    from_init = ast.parse("from .checkpoint import load_drafter").body[0]
    from_module = ast.parse("from ..exceptions import DatasetError").body[0]
    assert isinstance(from_init, ast.ImportFrom) and isinstance(from_module, ast.ImportFrom)
    assert resolve_base("arctic_drafters", from_init) == "arctic_drafters.checkpoint"
    assert resolve_base("arctic_drafters.training.datagen", from_module) == (
        "arctic_drafters.exceptions"
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package: str) -> None:
    offending = [
        str(imp)
        for imp in IMPORTS
        if imp.source.split(".")[0] == package and imp.target.split(".")[0] in FORBIDDEN[package]
    ]
    assert not offending, f"{package} must not import {sorted(FORBIDDEN[package])}:\n" + "\n".join(
        offending
    )


def source_version(module: str) -> str:
    """``__version__`` of the installed module's ``__init__.py``, read without importing it
    (arctic-runtime and arctic-vllm would import torch and vLLM: seconds)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, f"{module} is not installed"
    tree = ast.parse(Path(spec.origin).read_text())
    versions = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
        and isinstance(node.value, ast.Constant)
    ]
    assert len(versions) == 1, f"{spec.origin}: expected one literal __version__ = '...'"
    return str(versions[0])


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_metadata_version_is_the_source_version(distribution: str) -> None:
    # The version is written once, in __init__.py; the build reads it from there. A mismatch
    # means the environment holds a stale build: `uv sync` reinstalls it.
    assert importlib.metadata.version(distribution) == source_version(DISTRIBUTIONS[distribution])
