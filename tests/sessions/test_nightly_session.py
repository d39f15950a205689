"""``llmperf nightly``: real git repositories with stored baselines whose values step at a
known commit; the report names that commit as first bad, the one before as last good, the
bisect command with the recorded pytest arguments, and fails a night only once per
regression.

Split by tier from tests/test_nightly.py: these are its sessions tests; the others are in
tests/unit/commits/test_nightly.py, tests/e2e/test_nightly_e2e.py.
"""

from __future__ import annotations

import json

import pytest
from helpers import git


def test_a_real_session_records_its_arguments(llmperf_pytester: pytest.Pytester) -> None:
    pt = llmperf_pytester
    pt.makepyfile(test_chat="""
from pytest_llmperf import Workload, llmperf

@llmperf()
def test_chat(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=8, output_tokens=2, requests=1))
""")
    (pt.path / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n*.xml\n*.json\n")
    git(pt.path, "init", "-q", "-b", "main")
    git(pt.path, "add", ".")
    git(pt.path, "commit", "-q", "-m", "tests")
    res = pt.runpytest("--llmperf", "--llmperf-save", f"--junitxml={pt.path / 'j.xml'}",
                       "--llmperf-json", str(pt.path / "r.json"), "test_chat.py", "-k", "chat")
    res.assert_outcomes(passed=1)
    [path] = sorted((pt.path / "baselines").glob("*/*.json"))
    [run] = json.loads(path.read_text())["tests"]["test_chat.py::test_chat"]["runs"]
    args = run["client"]["pytest_args"]
    assert args[0] == "--llmperf"
    i = args.index("test_chat.py")  # pytester adds its own --basetemp after these
    assert args[i: i + 3] == ["test_chat.py", "-k", "chat"]
    assert not any(a.startswith(("--llmperf-save", "--junitxml", "--llmperf-json"))
                   or a.endswith(("r.json", "j.xml")) for a in args)
