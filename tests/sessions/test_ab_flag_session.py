"""``--llmperf-ab KEY=VALUE`` (a config change as a paired A/B in one flag) and
``llmperf compare --served`` (BASE's and HEAD's servers side by side, interleaved by request),
against the known-schedule oracle servers: exact, fast checks (a known slowdown has the right
sign and size; an A/A passes).

Split by tier from tests/test_ab_flag.py: these are its sessions tests; the others are in
tests/unit/run/test_ab_flag.py, tests/e2e/test_ab_flag_e2e.py (the real engine, and the time
the whole takes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import AB_TEST_FILE as TEST_FILE
from helpers import ab_entry
from helpers import ab_metric as metric
from helpers import compare_served as compare

from pytest_llmperf.testing.oracle import OracleServer


def test_unknown_key_and_save_are_usage_errors(llmperf_pytester: pytest.Pytester) -> None:
    llmperf_pytester.makepyfile(TEST_FILE)
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-ab", "n_btach=64")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llmperf-ab: unknown key 'n_btach'; did you mean n_batch?*"])
    assert "Traceback" not in result.stderr.str()
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-ab", "threads=1",
                                        "--llmperf-save")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llmperf-ab runs A/B pairs, which are not baselines*"])


# -- the oracle: exact --------------------------------------------------------------------------


def test_url_override_detects_the_slower_server_with_the_right_sign(
    llmperf_pytester: pytest.Pytester, llmperf_oracle: Callable[..., OracleServer],
) -> None:
    fast = llmperf_oracle(ttft_ms=5, itl_ms=5)
    slow = llmperf_oracle(ttft_ms=5, itl_ms=10)  # twice as long per token
    llmperf_pytester.makepyfile(TEST_FILE)
    out = llmperf_pytester.path / "r.json"
    md, html = llmperf_pytester.path / "r.md", llmperf_pytester.path / "r.html"
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-url", fast.url,
                                        "--llmperf-ab", f"url={slow.url}",
                                        "--llmperf-json", str(out), "--llmperf-markdown",
                                        str(md), "--llmperf-html", str(html))
    assert result.ret == 0  # reported, not failed: no --llmperf-ab-fail
    entry = ab_entry(out)
    tpot = metric(entry, "tpot_p50_ms")
    assert entry["verdict"] == "regression" and entry["pairs"] == 10
    assert tpot["verdict"] == "regression"
    assert tpot["change_pct"] == pytest.approx(100, abs=25)
    assert tpot["ci_low_pct"] > 50
    assert entry["label_b"] == f"B (url={slow.url})"
    # Both servers saw every measured request: interleaved by request, not run after run.
    assert len(fast.logs) == len(slow.logs) >= 10 * 3
    text = result.stdout.str()
    assert "llmperf A/B (--llmperf-ab)" in text
    result.stdout.fnmatch_lines(["*test_decode*tpot_p50_ms*+*%*regression*"])
    # ... and in every report: Markdown and HTML rows for the metric (JSON: above).
    (row,) = [ln for ln in md.read_text().splitlines() if "| tpot_p50_ms |" in ln]
    assert f"B (url={slow.url}) vs A" in row.replace("\\", "") and "❌ regression" in row
    page = html.read_text()
    assert 'data-metric="tpot_p50_ms" data-verdict="regression"' in page
    assert f"Paired A/B: B (url={slow.url}) against A" in page
    # The A/B is in the overview and the tests table, and B's last run is plotted beside A's
    # (A's is the test's run, a_run; B's samples are in the entry).
    (run_a,) = json.loads(out.read_text())["tests"][0]["runs"]
    assert entry["a_run"] == 0 and "samples_a" not in entry
    assert len(entry["samples_b"]) == len(run_a["samples"]) >= 3
    assert '<th>A/B</th>' in page and 'class="ab-headline" data-verdict="regression"' in page
    assert 'data-label="A"' in page and f'data-label="B (url={slow.url})"' in page
    md_head = next(ln for ln in md.read_text().splitlines() if ln.startswith("| test | result"))
    assert md_head.endswith("| vs baseline | A/B |")
    assert "inconclusive" not in text.split("llmperf baselines")[-1]
    # What moved with it (verdict/attribution.py): decode, the part that grew most; the
    # two engines differ in their URL only, which is not a setting.
    phases = {row["what"]: row for row in entry["attribution"]["phases"]}
    assert phases["decode (TPOT p50)"].get("most") is True
    assert phases["decode (TPOT p50)"]["change_pct"] == pytest.approx(100, abs=25)
    assert entry["attribution"]["environment"] == []
    result.stdout.fnmatch_lines(["*test_decode*: A/B *", "  what moved with it:",
                                 "    phase: decode (TPOT p50): * <- grew most"])
    # The other way round it is an improvement; with --llmperf-ab-fail a regression fails.
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-url", slow.url,
                                        "--llmperf-ab", f"url={fast.url}",
                                        "--llmperf-json", str(out))
    assert result.ret == 0
    assert metric(ab_entry(out), "tpot_p50_ms")["change_pct"] < -35
    # (the gate only asks "slower?": a big improvement clears at the first look as "ok")
    assert ab_entry(out)["verdict"] in ("ok", "improvement")
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-url", fast.url,
                                        "--llmperf-ab", f"url={slow.url}", "--llmperf-ab-fail")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*llmperf A/B: B (url=*) regressed against A*"])


def test_aa_on_one_server_is_ok(
    llmperf_pytester: pytest.Pytester, llmperf_oracle: Callable[..., OracleServer],
) -> None:
    server = llmperf_oracle(ttft_ms=5, itl_ms=5)
    llmperf_pytester.makepyfile(TEST_FILE)
    out = llmperf_pytester.path / "r.json"
    result = llmperf_pytester.runpytest("--llmperf", "--llmperf-url", server.url,
                                        "--llmperf-ab", f"url={server.url}",
                                        "--llmperf-ab-fail", "--llmperf-json", str(out))
    assert result.ret == 0
    entry = ab_entry(out)
    assert entry["verdict"] == "ok"
    assert abs(metric(entry, "tpot_p50_ms")["change_pct"]) < 10


# -- llmperf compare --served --------------------------------------------------------------------


def test_compare_served_aa_passes(served_repo: Path) -> None:
    proc = compare(served_repo, "HEAD", "HEAD")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("no regression: HEAD")


def test_compare_served_bad_usage(served_repo: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "compare", "HEAD",
                           "--served", "python serve.py", "--", "test_served.py"],
                          cwd=served_repo, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "llmperf: error: --served: the command must contain {port} (each side's server gets "
        "its own port)"]
    proc = subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "compare", "HEAD",
                           "--served", "false {port}", "--", "test_served.py"],
                          cwd=served_repo, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--served: the BASE (" in proc.stderr
    assert "server exited with code 1 before it became healthy" in proc.stderr
    assert "command: false " in proc.stderr  # the command (redacted) and its log follow
