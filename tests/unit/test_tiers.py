"""The test tiers' rules, checked by reading the test sources (``ast``), so that a test put in
the wrong tier, or a helper shared by importing another test module, fails here.

- ``tests/unit/`` is the fast tier: no module there uses pytester (``pytester``,
  ``Pytester``, ``runpytest...``, ``llmperf_pytester``), starts processes (imports
  ``subprocess`` or ``multiprocessing``), loads a model (imports ``llama_cpp``, asks for
  ``tiny_model``) or starts the oracle server (``OracleServer``, ``llmperf_oracle``, the
  ``oracle`` fixture).
- No test module, in any tier, imports another test module (``test_*``, ``conftest``): what
  they share is in ``tests/helpers.py`` and ``tests/conftest.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from helpers import ROOT

#: Modules the fast tier must not import (top-level names).
UNIT_FORBIDDEN_IMPORTS = ("subprocess", "multiprocessing", "llama_cpp")

#: Names (identifiers, attributes, fixture arguments) the fast tier must not use.
UNIT_FORBIDDEN_NAMES = ("pytester", "Pytester", "llmperf_pytester", "tiny_model",
                        "OracleServer", "llmperf_oracle", "oracle")


def _imported_modules(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
        yield node.module


def _names(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute):
        yield node.attr
    elif isinstance(node, ast.arg):
        yield node.arg
    elif isinstance(node, ast.alias):
        yield node.asname or node.name.rpartition(".")[2]


def unit_violations(path: Path) -> Iterator[tuple[int, str]]:
    """(line, why) for everything in ``path`` the fast tier does not allow."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        for module in _imported_modules(node):
            if module.partition(".")[0] in UNIT_FORBIDDEN_IMPORTS:
                yield node.lineno, f"imports {module}"
        for name in _names(node):
            if name in UNIT_FORBIDDEN_NAMES or name.startswith("runpytest"):
                yield getattr(node, "lineno", 0), f"uses {name}"


def imports_of_test_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, why) for every import, anywhere in ``path``, of a test module."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        for module in _imported_modules(node):
            top = module.partition(".")[0]
            if top.startswith("test_") or top == "conftest":
                yield node.lineno, f"imports the test module {module}"
        if isinstance(node, ast.ImportFrom) and node.level:
            for alias in node.names:
                if alias.name.startswith("test_") or (node.module or "").startswith("test_"):
                    yield node.lineno, f"imports a test module relatively ({alias.name})"


def tier_violations(tests: Path) -> list[str]:
    """Every broken rule under the ``tests`` folder, as ``path:line: why``."""
    problems = []
    for path in sorted(tests.rglob("*.py")):
        where = path.relative_to(tests.parent)
        if (tests / "unit") in path.parents:
            problems += [f"{where}:{line}: {why}" for line, why in unit_violations(path)]
        problems += [f"{where}:{line}: {why}" for line, why in imports_of_test_modules(path)]
    return problems


def test_the_tiers_keep_their_rules() -> None:
    tests = ROOT / "tests"
    assert len(list((tests / "unit").rglob("test_*.py"))) > 20, "the check would be vacuous"
    problems = tier_violations(tests)
    assert not problems, "tier rules broken:\n" + "\n".join(problems)


def test_the_checker_finds_planted_violations(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    (tests / "unit" / "run").mkdir(parents=True)
    (tests / "sessions").mkdir()
    (tests / "unit" / "run" / "test_bad.py").write_text(
        "import subprocess\n"
        "from llama_cpp import Llama\n"
        "def test_a(pytester):\n"
        "    pytester.runpytest_subprocess()\n"
        "def test_b(tiny_model):\n"
        "    from multiprocessing import Process\n")
    (tests / "unit" / "test_good.py").write_text(
        "import json\nfrom helpers import git\ndef test_c(tmp_path):\n    pass\n")
    (tests / "sessions" / "test_uses.py").write_text(
        # (spelt in two pieces so that grepping the tests for such imports finds none)
        "import subprocess\nfrom " "test_other import helper\n"
        "def test_d(pytester):\n    import conftest\n")
    problems = tier_violations(tests)
    assert sorted(problems) == sorted([
        "tests/sessions/test_uses.py:2: imports the test module test_other",
        "tests/sessions/test_uses.py:4: imports the test module conftest",
        "tests/unit/run/test_bad.py:1: imports subprocess",
        "tests/unit/run/test_bad.py:2: imports llama_cpp",
        "tests/unit/run/test_bad.py:3: uses pytester",
        "tests/unit/run/test_bad.py:5: uses tiny_model",
        "tests/unit/run/test_bad.py:4: uses pytester",
        "tests/unit/run/test_bad.py:4: uses runpytest_subprocess",
        "tests/unit/run/test_bad.py:6: imports multiprocessing",
    ]), problems
