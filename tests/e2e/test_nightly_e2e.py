"""``llmperf nightly``: real git repositories with stored baselines whose values step at a
known commit; the report names that commit as first bad, the one before as last good, the
bisect command with the recorded pytest arguments, and fails a night only once per
regression.

Split by tier from tests/test_nightly.py: these are its e2e tests; the others are in
tests/unit/commits/test_nightly.py, tests/sessions/test_nightly_session.py.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from helpers import chromium, cli_exit_code, git

from pytest_llmperf.cli import main
from pytest_llmperf.commits import nightly
from pytest_llmperf.store.baselines import BaselineStore
from pytest_llmperf.verdict.gate import Gate

PROFILE = "llama_cpp-tiny-nightly0"
PROFILE_DOC = {"engine": {"kind": "llama_cpp", "model": "tiny.gguf"}, "hardware": {}}
NODE = "tests/test_perf.py::test_chat"
ARGS = ["--llmperf", "tests/test_perf.py", "-k", "chat and not slow"]
BASE = {"ttft_p50_ms": 50.0, "tpot_p50_ms": 10.0, "output_tps": 100.0}


def make_repo(path: Path, n: int) -> list[str]:
    """A repository with ``n`` commits on main, oldest first."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    return add_commits(path, n, start=0)


def add_commits(path: Path, n: int, start: int) -> list[str]:
    shas = []
    for i in range(start, start + n):
        (path / "code.py").write_text(f"x = {i}\n")
        git(path, "add", "code.py")
        git(path, "commit", "-q", "-m", f"change {i}")
        shas.append(git(path, "rev-parse", "HEAD"))
    return shas


def run_doc(summary: dict[str, float], args: Sequence[str] | None = ARGS,
            gated: Sequence[str] | None = None) -> dict[str, Any]:
    client: dict[str, Any] = {"checks": []}
    if args is not None:
        client["pytest_args"] = list(args)
    if gated is not None:
        client["gated"] = list(gated)
    return {"summary": dict(summary), "workload": {"requests": 8, "input_tokens": 16},
            "engine": {"kind": "llama_cpp"}, "started_at": "2026-01-01T00:00:00Z",
            "client": client}


def save_history(repo: Path, shas: Sequence[str], *, factor: dict[str, Any] | None = None,
                 runs: int = 2, seed: int = 0, noise: float = 0.01, node: str = NODE,
                 args: Sequence[str] | None = ARGS, gated: Sequence[str] | None = None,
                 offset: int = 0) -> BaselineStore:
    """Baselines for ``shas`` (oldest first) with ``runs`` runs each and seeded noise;
    ``factor[metric]`` is a function of the commit's index giving the level's factor."""
    store = BaselineStore(repo / "baselines")
    rng = np.random.default_rng(seed)
    for i, sha in enumerate(shas):
        docs = []
        for _ in range(runs):
            summary = {}
            for metric, base in BASE.items():
                f = (factor or {}).get(metric)
                level = base * (f(i + offset) if f else 1.0)
                summary[metric] = float(level * np.exp(rng.normal(0.0, noise)))
            docs.append(run_doc(summary, args, gated))
        store.save(profile_id=PROFILE, profile=PROFILE_DOC, commit=sha, branch="main",
                   dirty=False, committed_at=f"2026-01-{1 + (i + offset) % 28:02d}T00:00:00Z",
                   tests={node: docs})
    return store


def step(at: int, size: float) -> Any:
    return lambda i: size if i >= at else 1.0


def llmperf(repo: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["nightly", "--dir", str(repo / "baselines"), *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def stepped(tmp_path: Path) -> tuple[Path, list[str]]:
    """16 commits; TPOT 20% slower from commit 8 on (8 commits after the step)."""
    repo = tmp_path / "repo"
    shas = make_repo(repo, 16)
    save_history(repo, shas, factor={"tpot_p50_ms": step(8, 1.2)})
    return repo, shas


def test_a_step_names_its_commits_and_the_bisect_command(
        stepped: tuple[Path, list[str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo, shas = stepped
    out_json, out_md = tmp_path / "n.json", tmp_path / "n.md"
    rc, out, err = llmperf(repo, "--json", str(out_json), "--markdown", str(out_md),
                           capsys=capsys)
    assert rc == 1, out + err
    doc = json.loads(out_json.read_text())
    [reg] = doc["regressions"]
    assert (reg["nodeid"], reg["metric"], reg["profile_id"]) == (NODE, "tpot_p50_ms", PROFILE)
    assert reg["first_bad"] == {"commit": shas[8], "subject": "change 8"}
    assert reg["last_good"] == {"commit": shas[7], "subject": "change 7"}
    assert reg["new"] is True and reg["args_recorded"] is True
    assert 15 < reg["change_pct"] < 25
    assert reg["ci_low_pct"] < reg["change_pct"] < reg["ci_high_pct"]
    assert 0 < reg["p_value"] < 0.01
    command = (f"llmperf bisect {shas[7][:12]} {shas[8][:12]} -- --llmperf tests/test_perf.py "
               f"-k 'chat and not slow'")
    assert reg["bisect_command"] == command
    assert shlex.split(command)[5:] == ARGS  # the recorded arguments, quoted for a shell
    assert command in out and command in out_md.read_text()
    # The other gated metrics held their level: no change points there.
    others = [s for s in doc["series"] if s["metric"] != "tpot_p50_ms"]
    assert {s["metric"] for s in others} == {"ttft_p50_ms", "output_tps"}
    assert all(s["change_points"] == [] and s["status"] == "ok" for s in others)
    # Every run of every commit is in the series, not their mean.
    [tpot] = [s for s in doc["series"] if s["metric"] == "tpot_p50_ms"]
    assert [c["commit"] for c in tpot["commits"]] == shas
    assert all(len(c["values"]) == 2 for c in tpot["commits"])
    assert doc["improvements"] == [] and doc["too_short"] == []
    md = out_md.read_text()
    assert "1 new regression(s)" in md and shas[8][:12] in md and shas[7][:12] in md
    # What moved with it (verdict/attribution.py): decode, between the two commits' runs.
    phases = {row["what"]: row for row in reg["attribution"]["phases"]}
    assert phases["decode (TPOT p50)"]["change_pct"] == pytest.approx(20, abs=6)
    assert phases["decode (TPOT p50)"]["most"] is True
    assert "  what moved with it:" in out.splitlines()
    assert any(line.startswith("    phase: decode (TPOT p50):") and "<- grew most" in line
               for line in out.splitlines())


def test_the_state_file_fails_a_night_once_per_regression(
        stepped: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    repo, shas = stepped
    rc, out, _ = llmperf(repo, capsys=capsys)
    assert rc == 1 and "regression (new)" in out
    state_path = repo / "baselines" / nightly.STATE_NAME
    state = json.loads(state_path.read_text())
    assert state["schema"] == nightly.STATE_SCHEMA
    [entry] = state["reported"]
    assert (entry["profile_id"], entry["nodeid"], entry["metric"], entry["first_bad"]) == (
        PROFILE, NODE, "tpot_p50_ms", shas[8])
    assert state_path.read_text() == json.dumps(state, sort_keys=True, indent=1) + "\n"

    # The next night: the same regression is still there, already reported.
    rc, out, _ = llmperf(repo, capsys=capsys)
    assert rc == 0 and "regression (reported before)" in out
    assert shas[8][:12] in out

    # Later nights: TTFT steps up too (a new regression), with the old one still known.
    more = add_commits(repo, 8, start=16)
    save_history(repo, more, factor={"tpot_p50_ms": step(8, 1.2), "ttft_p50_ms": step(16, 1.25)},
                 seed=1, offset=16)
    rc, out, _ = llmperf(repo, capsys=capsys)
    assert rc == 1
    news = [line for line in out.splitlines() if line.startswith("regression (new)")]
    assert len(news) == 1 and "ttft_p50_ms" in news[0] and more[0][:12] in news[0]
    assert any(line.startswith("regression (reported before)") and "tpot_p50_ms" in line
               for line in out.splitlines())
    assert len(json.loads(state_path.read_text())["reported"]) == 2
    rc, _, _ = llmperf(repo, capsys=capsys)
    assert rc == 0


def test_an_explicit_state_file(stepped: tuple[Path, list[str]], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    repo, _ = stepped
    state = tmp_path / "state" / "nightly.json"
    assert llmperf(repo, "--state", str(state), capsys=capsys)[0] == 1
    assert state.exists() and not (repo / "baselines" / nightly.STATE_NAME).exists()
    assert llmperf(repo, "--state", str(state), capsys=capsys)[0] == 0


def test_a_single_spike_is_not_a_change_point(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    shas = make_repo(repo, 16)
    save_history(repo, shas, factor={"tpot_p50_ms": lambda i: 1.5 if i == 9 else 1.0,
                                     "ttft_p50_ms": lambda i: 1.4 if i == 4 else 1.0})
    rc, out, _ = llmperf(repo, "--json", str(tmp_path / "n.json"), capsys=capsys)
    assert rc == 0, out
    doc = json.loads((tmp_path / "n.json").read_text())
    assert doc["regressions"] == [] and doc["improvements"] == []
    assert "0 new regression(s)" in out


def test_an_improvement_is_reported_but_never_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    shas = make_repo(repo, 14)
    save_history(repo, shas, factor={"output_tps": step(7, 1.3)})
    out_json = tmp_path / "n.json"
    rc, out, _ = llmperf(repo, "--json", str(out_json), capsys=capsys)
    assert rc == 0
    [imp] = json.loads(out_json.read_text())["improvements"]
    assert imp["metric"] == "output_tps" and imp["first_bad"]["commit"] == shas[7]
    assert imp["change_pct"] > 20 and imp["kind"] == "improvement"
    assert "improvement:" in out


def test_a_too_short_series_says_so(tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    shas = make_repo(repo, 3)
    save_history(repo, shas, factor={"tpot_p50_ms": step(2, 2.0)})
    out_json, out_md = tmp_path / "n.json", tmp_path / "n.md"
    rc, out, _ = llmperf(repo, "--json", str(out_json), "--markdown", str(out_md),
                         capsys=capsys)
    assert rc == 0
    doc = json.loads(out_json.read_text())
    assert {s["metric"] for s in doc["too_short"]} == {"ttft_p50_ms", "tpot_p50_ms",
                                                       "output_tps"}
    assert all("3 commits" in s["note"] for s in doc["too_short"])
    assert f"too short: {PROFILE} {NODE} tpot_p50_ms: " in out
    assert "Too short to decide" in out_md.read_text()


def test_args_not_recorded_fall_back_to_the_node_id(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    shas = make_repo(repo, 14)
    save_history(repo, shas, factor={"tpot_p50_ms": step(7, 1.25)}, args=None)
    out_json = tmp_path / "n.json"
    rc, out, _ = llmperf(repo, "--json", str(out_json), capsys=capsys)
    assert rc == 1
    [reg] = json.loads(out_json.read_text())["regressions"]
    assert reg["bisect_command"] == f"llmperf bisect {shas[6][:12]} {shas[7][:12]} -- {NODE}"
    assert reg["args_recorded"] is False and "not recorded" in reg["note"]
    assert "arguments were not recorded" in out


def test_dirty_files_and_side_branches_are_not_in_the_series(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    shas = make_repo(repo, 12)
    store = save_history(repo, shas)
    # A side branch merged into main: its commit is not on the first-parent history.
    git(repo, "checkout", "-q", "-b", "side", shas[5])
    (repo / "side.py").write_text("y = 1\n")
    git(repo, "add", "side.py")
    git(repo, "commit", "-q", "-m", "side work")
    side = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    merge = git(repo, "rev-parse", "HEAD")
    slow = {k: v * (3.0 if k != "output_tps" else 0.3) for k, v in BASE.items()}
    store.save(profile_id=PROFILE, profile=PROFILE_DOC, commit=side, branch="side",
               dirty=False, committed_at="2026-02-01T00:00:00Z", tests={NODE: [run_doc(slow)]})
    for sha in shas[8:]:  # uncommitted changes, saved apart: never part of the history
        store.save(profile_id=PROFILE, profile=PROFILE_DOC, commit=sha, branch="main",
                   dirty=True, committed_at="2026-02-01T00:00:00Z",
                   tests={NODE: [run_doc(slow)] * 2})
    save_history(repo, [merge], seed=3, offset=12)
    out_json = tmp_path / "n.json"
    rc, _, err = llmperf(repo, "--json", str(out_json), capsys=capsys)
    assert rc == 0
    doc = json.loads(out_json.read_text())
    assert doc["regressions"] == []
    [tpot] = [s for s in doc["series"] if s["metric"] == "tpot_p50_ms"]
    assert [c["commit"] for c in tpot["commits"]] == [*shas, merge]
    assert all(max(c["values"]) < 11 for c in tpot["commits"])
    assert "not on the first-parent history" in err and side[:12] in err


def test_a_metric_the_marker_gated_is_followed(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    shas = make_repo(repo, 14)
    BASE_E2E = {**BASE, "e2e_p50_ms": 200.0}
    store = BaselineStore(repo / "baselines")
    rng = np.random.default_rng(5)
    for i, sha in enumerate(shas):
        runs = [run_doc({k: v * (1.3 if k == "e2e_p50_ms" and i >= 7 else 1.0)
                         * float(np.exp(rng.normal(0, 0.01))) for k, v in BASE_E2E.items()},
                        gated=["e2e_p50_ms", "ttft_p50_ms"]) for _ in range(2)]
        store.save(profile_id=PROFILE, profile=PROFILE_DOC, commit=sha, branch="main",
                   dirty=False, committed_at="2026-01-01T00:00:00Z", tests={NODE: runs})
    out_json = tmp_path / "n.json"
    assert llmperf(repo, "--json", str(out_json), capsys=capsys)[0] == 1
    [reg] = json.loads(out_json.read_text())["regressions"]
    assert reg["metric"] == "e2e_p50_ms" and reg["first_bad"]["commit"] == shas[7]


# ---------------------------------------------------------------------------------------------
# The page.


def test_the_page_is_self_contained_and_names_the_commits(
        stepped: tuple[Path, list[str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo, shas = stepped
    # A second test that held its level: it comes after the regressed one.
    save_history(repo, shas, node="tests/test_perf.py::test_a_steady_one", seed=7)
    page = tmp_path / "nightly.html"
    rc, _, _ = llmperf(repo, "--html", str(page), capsys=capsys)
    assert rc == 1
    html = page.read_text()
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "https://" not in html
    sections = re.findall(r'<section class="test ([a-z]+)"[^>]*data-nodeid="([^"]+)"', html)
    assert sections == [("failed", NODE), ("quiet", "tests/test_perf.py::test_a_steady_one")]
    # The change is named: its commits in the table, the marked point, the tooltips.
    assert f'data-first-bad="{shas[8]}"' in html and f'data-last-good="{shas[7]}"' in html
    assert re.search(rf'<circle class="pt regression" data-commit="{shas[8][:7]}"', html)
    assert f"<title>{shas[8][:7]}: " in html and "first bad commit: +" in html
    assert f"<title>{shas[7][:7]}: " in html and "last good commit" in html
    assert "change 8" in html and shas[8][:12] in html
    assert html.count('data-plot="trend"') == 6  # 3 gated metrics x 2 tests
    assert "llmperf bisect " + shas[7][:12] in html


def test_the_page_renders_in_chromium(stepped: tuple[Path, list[str]], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from helpers import WINDOW, png_size, probe, run_chromium

    chromium()
    repo, _ = stepped
    page = tmp_path / "nightly.html"
    assert llmperf(repo, "--html", str(page), capsys=capsys)[0] == 1
    html = page.read_text()
    result = probe(tmp_path, html, "probed.html")
    assert result["errors"] == [] and result["resources"] == []
    assert [p["plot"] for p in result["plots"]] == ["trend"] * 3
    for p in result["plots"]:
        assert p["shapes"] > 16 and p["right"] <= WINDOW[0]
    assert result["bodyWidth"] <= WINDOW[0]
    shot = tmp_path / "nightly.png"
    proc = run_chromium(tmp_path, page, f"--screenshot={shot}")
    assert shot.exists(), proc.stderr[-2000:]
    assert png_size(shot.read_bytes()) == WINDOW
    assert len(shot.read_bytes()) > 30_000  # text, tables and plots, not a blank page


# ---------------------------------------------------------------------------------------------
# --bisect, --issues and bad usage.


def test_bisect_runs_for_each_new_regression(
        stepped: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_llmperf.commits import bisect

    repo, shas = stepped
    asked: list[bisect.Options] = []

    def fake_run(opts: bisect.Options, out: Any = None, err: Any = None) -> int:
        asked.append(opts)
        assert opts.json_path is not None
        opts.json_path.write_text(json.dumps(
            {"first_bad": {"commit": shas[8], "subject": "change 8"}, "confirmed": True}))
        return 0

    monkeypatch.setattr(bisect, "run", fake_run)
    out_json, issues = tmp_path / "n.json", tmp_path / "issues"
    rc, out, _ = llmperf(repo, "--bisect", "--json", str(out_json), "--issues", str(issues),
                         capsys=capsys)
    assert rc == 1
    [opts] = asked
    assert (opts.good, opts.bad, opts.pytest_args) == (shas[7], shas[8], ARGS)
    assert Path(opts.repo).resolve() == repo.resolve()
    [reg] = json.loads(out_json.read_text())["regressions"]
    assert reg["bisect"]["first_bad"] == shas[8] and reg["bisect"]["status"] == "found"
    assert f"bisect: first bad commit {shas[8][:12]} change 8" in out
    assert sorted(p.name for p in issues.iterdir()) == [".llmperf-issues.json", "01.md",
                                                        "01.title"]
    assert (issues / "01.title").read_text().strip() == (
        f"llmperf regression: tpot_p50_ms of {NODE}")
    body = (issues / "01.md").read_text()
    assert reg["bisect_command"] in body and "first bad commit" in body
    assert json.loads((repo / "baselines" / nightly.STATE_NAME).read_text())["reported"][0][
        "bisect_first_bad"] == shas[8]
    # Already reported: no bisect the next night.
    assert llmperf(repo, "--bisect", capsys=capsys)[0] == 0 and len(asked) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--dir", "{tmp}/nope"], "no baseline directory at"),
    (["--alpha", "2"], "--alpha 2.0: must be between 0 and 0.5"),
    (["--state", "{tmp}/bad-state.json"], "not a pytest-llmperf nightly state file"),
    (["--html", "{tmp}"], "is a directory"),
    (["--profile", "nosuch"], "no baselines of profile nosuch"),
    (["--min-change-pct", "x"], "invalid float value"),
])
def test_bad_usage_is_one_line_and_exit_2(
        stepped: tuple[Path, list[str]], tmp_path: Path, args: list[str], message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo, _ = stepped
    (tmp_path / "bad-state.json").write_text('{"reported": 3}')
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    rc = cli_exit_code(["nightly", "--dir", str(repo / "baselines"), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_gate_save_records_the_session_arguments(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, 1)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_perf.py").write_text("")
    gate = Gate(rootpath=repo, save=True)
    runs = [run_doc(BASE, args=None)]
    tests = [SimpleNamespace(nodeid=NODE, outcome="passed",
                             thresholds={"gate": ["e2e_p50_ms"]}, runs=runs)]
    gate.save(tests, ["--llmperf", "--llmperf-save", "--llmperf-json=o.json",
                      "test_perf.py", "-k", "chat"], repo / "tests")
    [path] = sorted((repo / "baselines").glob("*/*.json"))
    [run] = json.loads(path.read_text())["tests"][NODE]["runs"]
    assert run["client"]["pytest_args"] == ["--llmperf", "tests/test_perf.py", "-k", "chat"]
    assert run["client"]["gated"] == ["e2e_p50_ms"]
    assert run["client"]["checks"] == []  # what the run had is kept
    assert "pytest_args" not in runs[0]["client"]  # the test's own record is not changed
