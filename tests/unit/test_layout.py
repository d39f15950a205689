"""The package's structure, checked so that it does not regress.

- Loading the plugin (a plain ``pytest`` run, no ``--llmperf``) imports nothing heavy: read
  from the source here; tests/sessions/test_layout_session.py checks it in a real session.
- The imports inside ``pytest_llmperf/`` have no cycle, counting those inside functions.
- An import of the package's own module inside a function is there only to keep that module
  off the plugin's load path (what every plain ``pytest`` run imports): it is made by a
  module on the load path, of a module that is not on it, and every one is listed, with what
  it keeps away, in ``LAZY_IMPORTS``. No heavy package is on the load path.
- Example suites, benchmarks and the docs' code import no private name and nothing from the
  plugin's internals (``pytest_llmperf.plugin``, ``pytest_llmperf.session``).

No timings are asserted (machines are shared and noisy); benchmarks/plugin_overhead.py
measures what the plugin costs.
"""

from __future__ import annotations

import ast
import itertools
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers import HEAVY, ROOT

PACKAGE = "pytest_llmperf"


#: What a lazy import of the package's own modules may keep off the plugins' load path: these,
#: the engines' packages (seconds to import, or absent), and the standard library's costly
#: network and event-loop modules (tens of milliseconds together, on every pytest run).
HEAVY_PACKAGES = (*HEAVY, "vllm", "torch", "tensorrt_llm", "transformers", "tokenizers",
                  "lm_eval", "datasets", "pynvml", "fsspec", "gguf",
                  "asyncio", "ssl", "http.client", "urllib.request", "concurrent.futures")

#: What pytest loads as the plugin: a plain ``pytest`` run imports its module-level closure.
#: (``testing.plugin``, opt-in for tests, imports every module on purpose: not a load path.)
LOAD_ROOTS = (PACKAGE, f"{PACKAGE}.plugin")

#: The only imports of the package's own modules made inside functions (importer -> imported):
#: each keeps its target off the plugin's load path, for the heavy package it needs
#: (HEAVY_PACKAGES) or for what importing it costs every plain pytest run (measured with
#: ``python -X importtime`` and benchmarks/plugin_overhead.py; the comment says which).
#: Every other import is at module level; the tests below keep this list true and complete.
LAZY_IMPORTS: dict[str, tuple[str, ...]] = {
    PACKAGE: (  # the public names, on first use
        f"{PACKAGE}.run.metrics",  # RunResult, RequestRecord: numpy
        f"{PACKAGE}.run.workload",  # Workload: numpy
    ),
    f"{PACKAGE}.fixtures.bench": (  # the run, the load, capacity, A/B: numpy, scipy, psutil
        f"{PACKAGE}.run.bench", f"{PACKAGE}.run.capacity", f"{PACKAGE}.run.loadgen",
        f"{PACKAGE}.run.workload", f"{PACKAGE}.verdict.ab", f"{PACKAGE}.verdict.gate",
        f"{PACKAGE}.run.embeddings"),  # issue 24 item 6: a capacity search's SLO check
    f"{PACKAGE}.fixtures.quality": (
        f"{PACKAGE}.quality.accuracy",  # numpy
        f"{PACKAGE}.models.quantize",  # ~8 ms (ctypes), only for quantized_model
        f"{PACKAGE}.models.spec",  # ~3 ms, only for quantized_model
    ),
    f"{PACKAGE}.fixtures.servers": (
        f"{PACKAGE}.engines.openai",  # asyncio, ssl
        f"{PACKAGE}.engines.servers",  # urllib.request
    ),
    f"{PACKAGE}.plugin": (  # only under pytest-xdist
        f"{PACKAGE}.run.cpu",  # ~2 ms
        f"{PACKAGE}.run.devices",  # ~1 ms
    ),
    f"{PACKAGE}.session": (
        f"{PACKAGE}.finish",  # the end of a session: jinja2, rich, gitpython
        f"{PACKAGE}.run.metrics",  # numpy
        f"{PACKAGE}.shard",  # ~3 ms (statistics), only with --llmperf-shard
        f"{PACKAGE}.store.backends",  # gitpython, fsspec
        f"{PACKAGE}.verdict.gate",  # numpy, scipy, gitpython
        f"{PACKAGE}.verdict.outcome",  # the gate's numpy and scipy
        f"{PACKAGE}.verdict.thresholds",  # ~10 ms, only for a test marked @llmperf
    ),
}

#: Plugin internals: nothing outside the package imports from these.
INTERNAL = (f"{PACKAGE}.plugin", f"{PACKAGE}.session")


# ---------------------------------------------------------------------------------------------
# (b) No import cycle inside the package


@dataclass(frozen=True)
class Edge:
    target: str
    line: int
    lazy: bool = False  # only imported inside functions


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


def imports(tree: ast.Module, *, inside_functions: bool = False
            ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """(import, in a function) for the imports of a module, not those under TYPE_CHECKING;
    the ones inside functions (run when the function first runs) only if asked."""
    stack: list[tuple[ast.AST, bool]] = [(n, False) for n in reversed(tree.body)]
    while stack:
        node, in_function = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            if inside_functions:
                stack.extend((c, True) for c in reversed(list(ast.iter_child_nodes(node))))
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend((c, in_function) for c in reversed(node.orelse))
        elif isinstance(node, ast.stmt | ast.ExceptHandler):  # bodies run with their parent
            stack.extend((c, in_function) for c in reversed(list(ast.iter_child_nodes(node)))
                         if isinstance(c, ast.stmt | ast.ExceptHandler)
                         or (inside_functions and isinstance(c, ast.expr)))
        elif inside_functions and isinstance(node, ast.expr):  # lambdas in expressions
            stack.extend((c, in_function) for c in reversed(list(ast.iter_child_nodes(node))))


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: not in functions, not under TYPE_CHECKING."""
    for node, _ in imports(tree):
        yield node


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _module_edges(name: str, path: Path, modules: dict[str, Path],
                  inside_functions: bool = False) -> dict[str, Edge]:
    own_ancestors = set(_ancestors(name))
    edges: dict[str, Edge] = {}

    def add(target: str, line: int, explicit: bool, lazy: bool) -> None:
        if target == name or target not in modules:
            return
        if explicit or target not in own_ancestors:
            known = edges.get(target)
            if known is None or (known.lazy and not lazy):
                edges[target] = Edge(target, line, lazy)

    def add_with_parents(target: str, line: int, lazy: bool) -> None:
        add(target, line, True, lazy)
        for parent in _ancestors(target):
            add(parent, line, False, lazy)

    tree = ast.parse(path.read_text(), filename=str(path))
    for node, lazy in imports(tree, inside_functions=inside_functions):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add_with_parents(alias.name, node.lineno, lazy)
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
            add_with_parents(source, node.lineno, lazy)
        else:  # ``from pkg import submodule``: pkg is only imported as a parent
            for parent in [*_ancestors(source), source]:
                add(parent, node.lineno, False, lazy)
        for sub in submodules:
            add_with_parents(sub, node.lineno, lazy)
    return edges


def import_graph(root: Path, *, inside_functions: bool = False) -> dict[str, dict[str, Edge]]:
    """module -> {imported module of the package: where}: module-level imports only, or
    with ``inside_functions`` every import (an edge found only in functions is ``lazy``).

    ``from X import y`` imports ``X.y`` when that is a module, else ``X``; importing a module
    also imports its parent packages, except the importer's own ancestors (always imported
    before the importer starts, so no edge; an explicit ``from pkg import name`` of an
    ancestor still counts, since it needs ``pkg`` initialised far enough).
    """
    modules = package_modules(root)
    return {name: _module_edges(name, path, modules, inside_functions)
            for name, path in modules.items()}


def outside_imports(root: Path) -> dict[str, set[str]]:
    """module -> the modules from outside the package it imports at module level."""
    out: dict[str, set[str]] = {}
    for name, path in package_modules(root).items():
        found = set()
        for node in module_level_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif not node.level and node.module:
                found.add(node.module)
        out[name] = {m for m in found if m.partition(".")[0] != PACKAGE}
    return out


def _heavy(module: str) -> str | None:
    return next((h for h in HEAVY_PACKAGES if module == h or module.startswith(h + ".")), None)


def heavy_modules(root: Path) -> dict[str, str]:
    """module -> the heavy package that importing it imports (directly or through others)."""
    graph = import_graph(root)
    heavy: dict[str, str] = {}
    for m, outside in outside_imports(root).items():
        found = sorted(h for h in map(_heavy, outside) if h)
        if found:
            heavy[m] = found[0]
    changed = True
    while changed:
        changed = False
        for m, edges in graph.items():
            if m not in heavy:
                for target in sorted(edges):
                    if target in heavy:
                        heavy[m] = heavy[target]
                        changed = True
                        break
    return heavy


def load_path(root: Path, roots: tuple[str, ...] = LOAD_ROOTS) -> set[str]:
    """The modules loading the plugins imports: the module-level closure of ``roots``."""
    graph = import_graph(root)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m not in seen and m in graph:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def lazy_imports(root: Path) -> dict[str, set[str]]:
    """importer -> the package modules it imports only inside functions (a package imported
    only as the parent of such a module is left out: it comes with it)."""
    out: dict[str, set[str]] = {}
    for importer, edges in import_graph(root, inside_functions=True).items():
        lazy = {t for t, e in edges.items() if e.lazy}
        lazy = {t for t in lazy if not any(o.startswith(t + ".") for o in lazy)}
        if lazy:
            out[importer] = lazy
    return out


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


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    graph = import_graph(ROOT, inside_functions=True)
    assert sum(e.lazy for edges in graph.values() for e in edges.values()) > 5, (
        "found too few imports inside functions: the check would be vacuous")
    cycles = find_cycles(graph)
    report = "\n\n".join(describe_cycle(c, graph, ROOT) for c in cycles)
    assert not cycles, f"import cycles, counting imports inside functions:\n{report}"


def test_lazy_imports_only_keep_modules_off_the_load_path() -> None:
    found = lazy_imports(ROOT)
    loaded = load_path(ROOT)
    assert f"{PACKAGE}.session" in loaded and f"{PACKAGE}.finish" not in loaded, (
        "the load path was not found: the check would be vacuous")
    problems = []
    for importer, targets in sorted(found.items()):
        for target in sorted(targets):
            if importer not in loaded:
                problems.append(f"{importer} imports {target} inside a function, but "
                                f"{importer} is not on the plugin's load path: import it at "
                                "module level")
            elif target in loaded:
                problems.append(f"{importer} imports {target} inside a function, but "
                                f"{target} is on the load path anyway: import it at module "
                                "level")
    assert not problems, "\n".join(problems)
    listed = {i: set(t) for i, t in LAZY_IMPORTS.items()}
    assert found == listed, (
        "LAZY_IMPORTS (tests/unit/test_layout.py) lists the imports made inside functions; "
        f"found {sorted((i, sorted(t)) for i, t in found.items())}")


def test_no_heavy_module_on_the_load_path() -> None:
    heavy = heavy_modules(ROOT)
    on_path = {m: heavy[m] for m in sorted(load_path(ROOT)) if m in heavy}
    assert not on_path, f"loading the plugins imports heavy packages through: {on_path}"


def test_lazy_import_finder_on_a_planted_package(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text("from . import light\n"
                                   "def f():\n    from . import heavy\n    from . import other\n")
    (pkg / "light.py").write_text("def g():\n    from .plugin import f\n")
    (pkg / "heavy.py").write_text("import numpy\n")
    (pkg / "other.py").write_text("")
    assert lazy_imports(tmp_path) == {f"{PACKAGE}.plugin": {f"{PACKAGE}.heavy",
                                                            f"{PACKAGE}.other"},
                                      f"{PACKAGE}.light": {f"{PACKAGE}.plugin"}}
    assert heavy_modules(tmp_path) == {f"{PACKAGE}.heavy": "numpy"}
    assert load_path(tmp_path) == {PACKAGE, f"{PACKAGE}.plugin", f"{PACKAGE}.light"}
    graph = import_graph(tmp_path, inside_functions=True)
    assert find_cycles(graph), "plugin -> light at module level, light -> plugin in a function"
    assert not find_cycles(import_graph(tmp_path))


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
    for path in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
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
