"""The package's structure, checked so that it does not regress.

- Loading the plugin (a plain ``pytest`` run, no ``--llmperf``) imports nothing heavy.
- The module-level imports inside ``pytest_llmperf/`` have no cycle.
- Example suites, benchmarks and the docs' code import no private name and nothing from the
  plugin's internals (``pytest_llmperf.plugin``, ``pytest_llmperf.session``).

No timings are asserted (machines are shared and noisy); benchmarks/plugin_overhead.py
measures what the plugin costs.

Split by tier from tests/test_layout.py: these are its sessions tests; the others are in
tests/unit/test_layout.py.
"""

from __future__ import annotations

import json

import pytest
from helpers import HEAVY

PACKAGE = "pytest_llmperf"



# ---------------------------------------------------------------------------------------------
# (a) Loading the plugin imports nothing heavy

# Loaded with ``-p`` it is imported before the entry-point plugins, so it sees (and records
# who caused) every import the plugin makes; at session end it dumps sorted sys.modules.
PROBE = f'''
import json
import sys

HEAVY = {HEAVY!r}
FIRST_IMPORT = {{}}


class _Recorder:
    """Remembers, for each heavy module, the chain of importing modules; finds nothing."""

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in FIRST_IMPORT and top not in sys.modules:
            chain = []
            frame = sys._getframe(1)
            while frame is not None:
                mod = frame.f_globals.get("__name__", "?")
                ours = mod.startswith("{PACKAGE}")
                if not mod.startswith(("importlib", "_frozen_importlib")) and (ours or not chain):
                    if not chain or chain[-1].partition(":")[0] != mod:
                        chain.append(f"{{mod}}:{{frame.f_lineno}}")
                frame = frame.f_back
            FIRST_IMPORT[top] = chain[::-1]
        return None


sys.meta_path.insert(0, _Recorder())


def pytest_sessionfinish(session, exitstatus):
    with open("modules.json", "w") as fh:
        json.dump({{"modules": sorted(sys.modules), "first_import": FIRST_IMPORT}}, fh)
'''


def _loaded_modules(pytester: pytest.Pytester, *args: str) -> dict[str, object]:
    pytester.makepyfile(test_one="def test_x():\n    pass\n", llmperf_import_probe=PROBE)
    result = pytester.runpytest_subprocess("-p", "llmperf_import_probe", "-p", "no:cacheprovider",
                                           *args, "test_one.py")
    result.assert_outcomes(passed=1)
    data: dict[str, object] = json.loads((pytester.path / "modules.json").read_text())
    return data


def test_loading_the_plugin_imports_nothing_heavy(pytester: pytest.Pytester,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    data = _loaded_modules(pytester)
    modules = data["modules"]
    assert isinstance(modules, list)
    assert f"{PACKAGE}.plugin" in modules, "the plugin was not loaded: the check would be vacuous"
    heavy = [name for name in HEAVY if name in modules]
    if heavy:
        # Other installed plugins may load some of them anyway (jaxtyping loads numpy): only
        # what our plugin adds counts.
        baseline = _loaded_modules(pytester, "-p", "no:llmperf")["modules"]
        assert isinstance(baseline, list)
        heavy = [name for name in heavy if name not in baseline]
    if heavy:
        chains = data["first_import"]
        assert isinstance(chains, dict)
        lines = [f"{name}, imported by:\n    " + " -> ".join(chains.get(name, ["?"]))
                 for name in heavy]
        pytest.fail("a plain pytest run with the plugin loaded imports:\n" + "\n".join(lines))
