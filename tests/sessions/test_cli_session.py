"""The ``llmperf`` command on real baseline files in a real git repository.

Split by tier from tests/test_cli.py: these are its sessions tests; the others are in
tests/unit/cli/test_cli.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import cli_exit_code, commit, git, make_repo

from pytest_llmperf.cli import main
from pytest_llmperf.store.baselines import BaselineStore

NODE = "tests/test_x.py::test_chat"
PROFILE = {"engine": {"kind": "llama_cpp", "version": "0.3", "model": "m.gguf"},
           "hardware": {"cpu_model": "Test CPU", "cpu_cores": 2}}


def runs(ttft: float, n: int = 3, spread: float = 0.01, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = float(np.exp(rng.normal(0, spread)))
        out.append({"summary": {"ttft_p50_ms": ttft * x, "tpot_p50_ms": ttft / 10 * x,
                                "output_tps": 1000 / ttft / x, "ttft_p95_ms": ttft * x,
                                "e2e_p50_ms": ttft * 3 * x, "errors": 0},
                    "started_at": "2026-01-01T00:00:00+00:00", "workload": {}, "engine": {},
                    "samples": []})
    return out


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A repository with three commits: c1 (main), c2 (slower by 30%), c3 (same as c2)."""
    root = make_repo(tmp_path / "repo")
    c1 = git(root, "rev-parse", "HEAD")
    c2 = commit(root, "x = 2\n", "second")
    c3 = commit(root, "x = 3\n", "third")
    st = BaselineStore(root / "baselines")
    for i, (sha, ttft) in enumerate(((c1, 100.0), (c2, 130.0), (c3, 130.0))):
        st.save(profile_id="llama_cpp-m-0123456789", profile=PROFILE, commit=sha,
                branch="main", dirty=False, committed_at=f"2026-01-0{i + 1}T00:00:00+00:00",
                tests={NODE: runs(ttft, seed=i)})
    monkeypatch.chdir(root)
    return {"root": root, "store": st, "c1": c1, "c2": c2, "c3": c3}


def test_list(repo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baselines", "list"]) == 0
    out = capsys.readouterr().out
    assert "llama_cpp-m-0123456789  (llama_cpp 0.3, m.gguf, Test CPU x2)" in out
    lines = [ln for ln in out.splitlines() if "run(s)" in ln]
    assert [ln.split()[0] for ln in lines] == [repo["c3"][:12], repo["c2"][:12], repo["c1"][:12]]
    assert "1 test(s), 3 run(s)" in lines[0] and "committed 2026-01-03" in lines[0]


def test_list_names_a_corrupt_file_and_lists_the_rest(
    repo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = repo["store"].path_for("llama_cpp-m-0123456789", repo["c2"])
    bad.write_text("{oops")
    assert main(["baselines", "list"]) == 1
    cap = capsys.readouterr()
    assert repo["c1"][:12] in cap.out and repo["c3"][:12] in cap.out
    assert repo["c2"][:12] not in cap.out
    [warning] = cap.err.strip().splitlines()
    assert str(bad) in warning and "corrupt" in warning


def test_show_by_branch_and_prefix(repo: dict[str, Any],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baselines", "show", "main"]) == 0
    out = capsys.readouterr().out
    assert f"commit {repo['c3']}" in out and f"{NODE}: 3 run(s)" in out
    assert "ttft_p50_ms" in out
    assert main(["baselines", "show", repo["c1"][:9], "--json"]) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["commit"] == repo["c1"] and doc["schema"] == "pytest-llmperf/baseline"


def test_diff_shows_the_regression_with_its_interval(
    repo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["baselines", "diff", repo["c1"], repo["c2"]]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith("ttft_p50_ms"))
    assert "+30." in row and row.endswith("regression")
    tps = next(ln for ln in out.splitlines() if ln.startswith("output_tps"))
    assert "-23." in tps and tps.endswith("regression")
    p95 = next(ln for ln in out.splitlines() if ln.startswith("ttft_p95_ms"))
    assert p95.endswith("warn (not gated)")
    assert main(["baselines", "diff", repo["c1"], repo["c2"], "--fail-on-regression"]) == 1
    capsys.readouterr()
    assert main(["baselines", "diff", repo["c2"], repo["c3"], "--fail-on-regression"]) == 0
    out = capsys.readouterr().out
    assert "regression" not in out


def test_diff_refuses_different_profiles(repo: dict[str, Any],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    other = {**PROFILE, "hardware": {"cpu_model": "Other CPU", "cpu_cores": 64}}
    st: BaselineStore = repo["store"]
    sha = commit(repo["root"], "x = 4\n", "fourth")
    st.save(profile_id="llama_cpp-m-ffffffffff", profile=other, commit=sha, branch="main",
            dirty=False, committed_at="2026-01-05T00:00:00+00:00", tests={NODE: runs(100.0)})
    assert main(["baselines", "diff", repo["c1"], sha]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "share no profile" in line
    assert "hardware.cpu_cores: baseline 2, now 64" in line


def test_prune(repo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baselines", "prune", "--keep", "2", "--dry-run"]) == 0
    assert "would remove 1 baseline file(s)" in capsys.readouterr().out
    assert len(repo["store"].entries()) == 3
    assert main(["baselines", "prune", "--keep", "1"]) == 0
    assert "removed 2 baseline file(s)" in capsys.readouterr().out
    assert [e.commit for e in repo["store"].entries()] == [repo["c3"]]


@pytest.mark.parametrize("argv,needle", [
    (["baselines", "prune", "--keep", "0"], "keep at least 1"),
    (["baselines", "prune"], "--keep"),
    (["baselines", "show", "nosuchref"], "names no stored baseline commit"),
    (["baselines", "frobnicate"], "invalid choice"),
    (["baselines", "diff", "main"], "required: B"),
    ([], "required: COMMAND"),
])
def test_bad_usage_is_one_line_and_exit_2(
    repo: dict[str, Any], capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code = cli_exit_code(argv)
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert needle in err and "Traceback" not in err


def test_changes_names_the_commit_where_a_shift_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_repo(tmp_path / "r")
    st = BaselineStore(root / "baselines")
    shas = []
    for i in range(14):
        sha = commit(root, f"x = {i}\n", f"c{i}")
        shas.append(sha)
        level = 100.0 if i < 8 else 125.0
        st.save(profile_id="p", profile=PROFILE, commit=sha, branch="main", dirty=False,
                committed_at=f"2026-01-{i + 1:02d}T00:00:00+00:00",
                tests={NODE: runs(level, n=2, spread=0.02, seed=i)})
    monkeypatch.chdir(root)
    assert main(["baselines", "changes", "--metric", "ttft_p50_ms"]) == 0
    out = capsys.readouterr().out
    assert f"starting at {shas[8][:12]}" in out and "+2" in out


def test_console_entry_point_and_report_subcommand(repo: dict[str, Any]) -> None:
    res = subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "baselines", "list"],
                         capture_output=True, text=True, cwd=repo["root"])
    assert res.returncode == 0 and repo["c1"][:12] in res.stdout
    res = subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "--help"],
                         capture_output=True, text=True, cwd=repo["root"])
    assert "baselines" in res.stdout
    try:
        import pytest_llmperf.cli.report  # noqa: F401
    except ImportError:
        return
    assert "report" in res.stdout  # the other helper's subcommand is wired in
