"""The package's structure, checked so that it does not regress.

- Loading the plugin (a plain ``pytest`` run, no ``--llmperf``) imports nothing heavy.
- The module-level imports inside ``pytest_llmperf/`` have no cycle.
- Example suites, benchmarks and the docs' code import no private name and nothing from the
  plugin's internals (``pytest_llmperf.plugin``, ``pytest_llmperf.session``).

No timings are asserted (machines are shared and noisy); benchmarks/plugin_overhead.py
measures what the plugin costs.

Split by tier from tests/test_layout.py: these are its unit tests; the others are in
tests/sessions/test_layout_session.py.
"""

from __future__ import annotations

import ast
import itertools
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers import ROOT

PACKAGE = "pytest_llmperf"

#: Plugin internals: nothing outside the package imports from these.
INTERNAL = (f"{PACKAGE}.plugin", f"{PACKAGE}.session")


# ---------------------------------------------------------------------------------------------
# (b) No import cycle inside the package


@dataclass(frozen=True)
class Edge:
    target: str
    line: int


def package_modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every module under ``root/pytest_llmperf``."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: not in functions, not under TYPE_CHECKING."""
    stack: list[ast.AST] = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(reversed(node.orelse))
        elif isinstance(node, ast.stmt):  # if/try/with/for/class bodies run at import time
            stack.extend(reversed([c for c in ast.iter_child_nodes(node)
                                   if isinstance(c, ast.stmt | ast.ExceptHandler)]))
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(reversed(node.body))


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _module_edges(name: str, path: Path, modules: dict[str, Path]) -> dict[str, Edge]:
    own_ancestors = set(_ancestors(name))
    edges: dict[str, Edge] = {}

    def add(target: str, line: int, explicit: bool) -> None:
        if target == name or target not in modules:
            return
        if explicit or target not in own_ancestors:
            edges.setdefault(target, Edge(target, line))

    def add_with_parents(target: str, line: int) -> None:
        add(target, line, True)
        for parent in _ancestors(target):
            add(parent, line, False)

    tree = ast.parse(path.read_text(), filename=str(path))
    for node in module_level_imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add_with_parents(alias.name, node.lineno)
            continue
        if node.level:
            base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source not in modules:
            continue
        names = [alias.name for alias in node.names]
        submodules = [f"{source}.{n}" for n in names if f"{source}.{n}" in modules]
        if len(submodules) < len(names):  # some names are attributes of ``source`` itself
            add_with_parents(source, node.lineno)
        else:  # ``from pkg import submodule``: pkg is only imported as a parent
            for parent in [*_ancestors(source), source]:
                add(parent, node.lineno, False)
        for sub in submodules:
            add_with_parents(sub, node.lineno)
    return edges


def import_graph(root: Path) -> dict[str, dict[str, Edge]]:
    """module -> {imported module of the package: where}, module-level imports only.

    ``from X import y`` imports ``X.y`` when that is a module, else ``X``; importing a module
    also imports its parent packages, except the importer's own ancestors (always imported
    before the importer starts, so no edge; an explicit ``from pkg import name`` of an
    ancestor still counts, since it needs ``pkg`` initialised far enough).
    """
    modules = package_modules(root)
    return {name: _module_edges(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """One cycle (a list of modules, first == last) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the package is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)

    cycles = []
    for comp in components:
        members = set(comp)
        start = comp[0]
        # Shortest path from start back to start inside the component (breadth first).
        prev: dict[str, str] = {}
        frontier = [start]
        found = None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w not in members:
                        continue
                    if w == start:
                        found = v
                        break
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        assert found is not None
        path = [found]
        while path[-1] != start:
            path.append(prev[path[-1]])
        cycles.append([*reversed(path), start])
    return cycles


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, Edge]], root: Path) -> str:
    modules = package_modules(root)
    steps = []
    for a, b in itertools.pairwise(cycle):
        where = modules[a].relative_to(root)
        steps.append(f"  {a} ({where}:{graph[a][b].line}) imports {b}")
    return "\n".join(steps)


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph(ROOT)
    assert len(graph) > 10, "found too few modules: the check would be vacuous"
    cycles = find_cycles(graph)
    report = "\n\n".join(describe_cycle(c, graph, ROOT) for c in cycles)
    assert not cycles, f"import cycles among module-level imports:\n{report}"


def test_cycle_finder_finds_a_planted_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from . import b\nfrom .sub import c\nx = 1\n")
    (pkg / "b.py").write_text("from . import a\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("def f():\n    from .. import b\n"
                                      "from pytest_llmperf import x\n")
    graph = import_graph(tmp_path)
    assert set(graph[f"{PACKAGE}.a"]) == {f"{PACKAGE}.sub", f"{PACKAGE}.sub.c"}
    assert set(graph[f"{PACKAGE}.b"]) == {f"{PACKAGE}.a"}
    cycles = find_cycles(graph)
    assert len(cycles) == 1
    assert cycles[0][0] == cycles[0][-1]
    assert set(cycles[0]) == {PACKAGE, f"{PACKAGE}.a", f"{PACKAGE}.sub.c"}


# ---------------------------------------------------------------------------------------------
# (c) No example, benchmark or doc imports a private name or the plugin's internals

FENCE = re.compile(r"^(?P<indent>[ \t]*)```[ \t]*(?:python|py)[ \t]*\n(?P<code>.*?)^[ \t]*```",
                   re.MULTILINE | re.DOTALL)


def public_sources(root: Path) -> Iterator[tuple[str, int, str]]:
    """(where, first line, Python source) for every example, benchmark and doc code block."""
    for folder in ("example_suites", "benchmarks"):
        for path in sorted((root / folder).rglob("*.py")):
            yield str(path.relative_to(root)), 1, path.read_text()
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        if not path.exists():
            continue
        text = path.read_text()
        for match in FENCE.finditer(text):
            first = text.count("\n", 0, match.start("code")) + 1
            yield str(path.relative_to(root)), first, textwrap.dedent(match.group("code"))


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def forbidden_imports(source: str) -> Iterator[tuple[int, str]]:
    """(line, why) for every import, anywhere in ``source``, of a private or internal name."""
    for node in ast.walk(ast.parse(source)):
        targets: list[tuple[str, str | None]]
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            targets = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in targets:
            if module.partition(".")[0] != PACKAGE:
                continue
            full = f"{module}.{name}" if name else module
            what = f"from {module} import {name}" if name else f"import {module}"
            if any(_private(part) for part in full.split(".")):
                yield node.lineno, f"{what}: a private name"
            elif any(full == m or full.startswith(m + ".") for m in INTERNAL):
                yield node.lineno, f"{what}: plugin internals"


def test_examples_benchmarks_and_docs_import_only_public_names() -> None:
    problems = []
    seen = 0
    for where, first, source in public_sources(ROOT):
        seen += 1
        try:
            found = list(forbidden_imports(source))
        except SyntaxError as exc:
            line = first + (exc.lineno or 1) - 1
            problems.append(f"{where}:{line}: not valid Python ({exc.msg})")
            continue
        problems += [f"{where}:{first + line - 1}: {why}" for line, why in found]
    assert seen > 5, "found too few sources: the check would be vacuous"
    assert not problems, "imports of private names or plugin internals:\n" + "\n".join(problems)


def test_forbidden_imports_are_recognised() -> None:
    source = textwrap.dedent("""
        from pytest_llmperf import Workload, llmperf, __version__
        from pytest_llmperf.engines import Engine
        import pytest_llmperf.report.html
        from pytest_llmperf import _helper
        from pytest_llmperf._private import thing
        import pytest_llmperf.run._impl
        from pytest_llmperf import plugin
        def f():
            from pytest_llmperf.plugin import STATE
            from pytest_llmperf.session import LLMPerfSession
        from other import _fine
    """)
    assert {line for line, _ in forbidden_imports(source)} == {5, 6, 7, 8, 10, 11}
