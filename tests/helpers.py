"""Helpers shared by the test modules of every tier (a plain module: ``tests/`` is on sys.path,
``pythonpath`` in pyproject.toml). No test module imports another test module: what two of
them share lives here, fixtures in ``tests/conftest.py``.

- ``ROOT``: the repository root.
- git: ``git()`` (with a fixed identity), ``make_repo()``, ``commit()``.
- ``no_internal_traceback()``: a session's output shows no traceback into the package.
- Report data: results documents and baselines of known content, for the report tests.
  Shapes: the results JSON (report/json_report.py), each test's ``comparison`` (gate.py) and
  baseline files ``baselines/<profile_id>/<commit>.json`` (store.py). Timings are exact so
  that the numbers on the rendered page can be checked. ``parse_page()``, ``table_rows()``.
- Chromium: ``chromium()``, ``run_chromium()``, ``probe()``, ``png_size()``.
- ``llmperf compare``: ``llmperf()`` (the console entry as a process), ``worktrees()``.
- Multi-turn: ``multiturn_oracle()`` and its schedule (``TTFT_MS``, ``ITL_MS``, ``PREFILL_MS``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.run.metrics import NS_PER_MS, RequestRecord, summarize
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer

ROOT = Path(__file__).resolve().parents[1]

# A suite of two marked tests on the tiny model: one passes, one breaks its TTFT limit.
SUITE = """
from pytest_llmperf import Workload, llmperf

@llmperf(ttft_p95_ms=60000, min_tps=0.1)
def test_fast(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=6, requests=4))

@llmperf(ttft_p50_ms=0.000001, min_tps=0.1)
def test_too_strict(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, Workload(input_tokens=16, output_tokens=5, requests=3))
"""

PROFILE = "llama_cpp-tiny-0123abcd"
ENGINE = {"kind": "llama_cpp", "version": "0.3.36", "model": "tiny.gguf",
          "model_desc": "llama tiny F32", "settings": {"n_threads": 1}}
HOST = {"machine": "x86_64", "processor": "", "python": "3.11.7", "cpu_count": 2}
WARNING = ("the load generator fell behind: event-loop lag / send delay p99 40.0 ms against "
           "a TTFT p50 of 50.0 ms; latencies include client overhead")


def make_samples(ttfts_ms: Sequence[float], itl_ms: float, tokens: int,
                 gap_ms: float = 10.0) -> list[dict[str, Any]]:
    """One request per TTFT, sent back to back: tokens chunks itl_ms apart after the first."""
    samples = []
    t = 0.0
    for i, ttft in enumerate(ttfts_ms):
        send = t
        chunks = [send + ttft + k * itl_ms for k in range(tokens)]
        samples.append(RequestRecord(
            index=i, prompt_tokens=16, send_ns=int(send * NS_PER_MS),
            chunk_ns=[int(c * NS_PER_MS) for c in chunks], chunk_tokens=[1] * tokens,
            done_ns=int(chunks[-1] * NS_PER_MS) + 1, output_tokens=tokens,
        ).to_dict())
        t = chunks[-1] + gap_ms
    return samples


def make_run(ttfts_ms: Sequence[float], itl_ms: float = 5.0, tokens: int = 8,
             started_at: str = "2026-11-20T10:00:00+00:00", warnings: Sequence[str] = (),
             thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    from pytest_llmperf.verdict.thresholds import evaluate

    samples = make_samples(ttfts_ms, itl_ms, tokens)
    summary = summarize([RequestRecord.from_dict(s) for s in samples])
    checks = [c.to_dict() for c in evaluate(thresholds or {}, summary)]
    return {
        "summary": summary, "samples": samples, "started_at": started_at,
        "workload": {"requests": len(ttfts_ms), "input_tokens": 16, "output_tokens": tokens,
                     "concurrency": 1, "warmup": 0, "slo": {}},
        "engine": dict(ENGINE), "warnings": list(warnings), "client": {"checks": checks},
    }


def fake_commit(i: int) -> str:
    return f"{i:02d}" + "c0ffee" * 6 + "ab"  # 40 hex digits


def write_baselines(root: Path, ttft_by_commit: Sequence[float],
                    nodeid: str = "test_suite.py::test_chat") -> list[str]:
    """One baseline file per commit, oldest first; returns the commits."""
    commits = []
    for i, ttft in enumerate(ttft_by_commit):
        sha = fake_commit(i)
        commits.append(sha)
        run = make_run([ttft, ttft + 2, ttft + 4], started_at=f"2026-11-{10 + i:02d}T08:00:00Z")
        doc = {
            "schema": "pytest-llmperf/baseline", "schema_version": 1, "profile_id": PROFILE,
            "profile": {"engine": {"kind": "llama_cpp"}, "hardware": HOST},
            "commit": sha, "branch": "main", "dirty": False,
            "committed_at": f"2026-11-{10 + i:02d}T07:00:00Z",
            "saved_at": f"2026-11-{10 + i:02d}T08:05:00Z",
            "tests": {nodeid: {"runs": [run]}},
        }
        path = root / PROFILE / f"{sha}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc), encoding="utf-8")
    return commits


def comparison(baseline_commit: str, current_ttft: float, base_ttft: float) -> dict[str, Any]:
    change = (current_ttft - base_ttft) / base_ttft * 100
    return {
        "baseline_commit": baseline_commit, "profile_id": PROFILE, "status": "compared",
        "message": f"compared with {baseline_commit[:12]} (main): 1 run(s) vs 1",
        "metrics": [
            {"metric": "ttft_p50_ms", "baseline": base_ttft, "current": current_ttft,
             "change_pct": change, "ci_low_pct": change - 8.0, "ci_high_pct": change + 8.0,
             "verdict": "regression", "gated": True, "tolerance_pct": 5.0},
            {"metric": "output_tps", "baseline": 150.0, "current": 151.5,
             "change_pct": 1.0, "ci_low_pct": -2.5, "ci_high_pct": 4.5,
             "verdict": "ok", "gated": True, "tolerance_pct": 5.0},
            {"metric": "ttft_p99_ms", "baseline": 60.0, "current": 90.0,
             "change_pct": 50.0, "ci_low_pct": None, "ci_high_pct": None,
             "verdict": "warn", "gated": False},
        ],
    }


def results_doc(baseline_commit: str | None = None) -> dict[str, Any]:
    """Two tests: test_chat (regressed against baseline_commit, with a client warning) and
    test_prefill (a failed threshold, no baseline)."""
    chat = make_run([60.0, 62.0, 64.0, 66.0], started_at="2026-11-22T09:00:00Z",
                    warnings=[WARNING], thresholds={"ttft_p95_ms": 500, "min_tps": 1})
    prefill = make_run([200.0, 220.0], itl_ms=7.0, tokens=4,
                       started_at="2026-11-22T09:01:00Z",
                       thresholds={"ttft_p50_ms": 100, "max_errors": 0})
    tests: list[dict[str, Any]] = [
        {"nodeid": "test_suite.py::test_chat", "outcome": "failed" if baseline_commit
         else "passed", "thresholds": {"ttft_p95_ms": 500, "min_tps": 1},
         "message": "", "runs": [chat],
         "comparison": comparison(baseline_commit, 62.0 + 1.0, 52.0) if baseline_commit
         else None},
        {"nodeid": "test_suite.py::test_prefill", "outcome": "failed",
         "thresholds": {"ttft_p50_ms": 100, "max_errors": 0},
         "message": "Failed: llmperf: ttft_p50_ms 210 > 100\n1 llmperf threshold(s) failed:\n"
                    "  ttft_p50_ms: measured 210, limit <= 100",
         "runs": [prefill],
         "comparison": {"baseline_commit": None, "profile_id": PROFILE,
                        "status": "no baseline", "message": "no baseline for this test",
                        "metrics": []}},
    ]
    return {"schema": "pytest-llmperf/results", "schema_version": 1,
            "created": "2026-11-22T09:02:00+00:00", "host": dict(HOST), "tests": tests}


# ------------------------------------------------------------------ reading a rendered page

VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "source", "col", "area", "wbr"})


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(" ".join(parts).split())

    def iter(self) -> list[Node]:
        out: list[Node] = [self]
        for c in self.children:
            if isinstance(c, Node):
                out.extend(c.iter())
        return out

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        def ok(n: Node) -> bool:
            if tag is not None and n.tag != tag:
                return False
            for k, v in attrs.items():
                key = k.rstrip("_").replace("_", "-")
                have = n.attrs.get(key)
                if have is None:
                    return False
                if key == "class" and v not in have.split():
                    return False
                if key != "class" and have != v:
                    return False
            return True

        return [n for n in self.iter()[1:] if ok(n)]

    def find(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}> on the page"
        return found[0]


def parse_page(html: str) -> Node:
    from html.parser import HTMLParser

    root = Node("#root", {}, None)

    class Builder(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.cur = root

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
            self.cur.children.append(node)
            if tag not in VOID:
                self.cur = node

        def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.cur.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.cur))

        def handle_endtag(self, tag: str) -> None:
            node: Node | None = self.cur
            while node is not None and node.tag != tag:
                node = node.parent
            if node is not None and node.parent is not None:
                self.cur = node.parent

        def handle_data(self, data: str) -> None:
            self.cur.children.append(data)

    Builder().feed(html)
    return root


def external_references(html: str) -> list[str]:
    """Every src/href/url()/@import on the page that would fetch something."""
    import re

    refs = re.findall(r"""(?:src|href|xlink:href|action|poster|data)\s*=\s*["']([^"']*)["']""",
                      html, flags=re.I)
    refs += re.findall(r"url\(\s*['\"]?([^)'\"]*)", html, flags=re.I)
    refs += re.findall(r"@import\s+['\"]([^'\"]+)", html, flags=re.I)
    return [r for r in refs if r and not r.startswith("#")]


# ---------------------------------------------------------------------------------------------
# git

def git(repo: Path, *args: str) -> str:
    """``git ARGS`` in ``repo`` with a fixed identity (an ``-c user.*`` given in ``args`` does
    not override it); its stripped stdout, or a failed assertion showing its stderr."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    (path / "code.py").write_text("x = 1\n")
    git(path, "add", "code.py")
    git(path, "commit", "-q", "-m", "first")
    return path


def commit(repo: Path, text: str, msg: str) -> str:
    (repo / "code.py").write_text(text)
    git(repo, "commit", "-q", "-am", msg)
    return git(repo, "rev-parse", "HEAD")


# ---------------------------------------------------------------------------------------------
# Sessions


def no_internal_traceback(output: str) -> None:
    assert "Traceback" not in output
    assert "pytest_llmperf/" not in output


# ---------------------------------------------------------------------------------------------
# Markdown tables


def table_rows(text: str) -> list[list[str]]:
    """The table's rows (header first), cells stripped, the separator line dropped."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|:"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows.append(cells)
    return rows


# ---------------------------------------------------------------------------------------------
# Chromium (tests/e2e/test_browser.py; skipped without it)

WINDOW = (1400, 2400)


PROBE = """
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(
  String(e.message || (e.target && (e.target.src || e.target.href)) || 'error')), true);
document.addEventListener('securitypolicyviolation', e => window.__errors.push(
  'blocked ' + e.blockedURI + ' by ' + e.violatedDirective));
const origError = console.error;
console.error = (...args) => { window.__errors.push(args.join(' ')); origError(...args); };
window.addEventListener('load', () => {
  const plots = [...document.querySelectorAll('svg.plot')].map(s => {
    const r = s.getBoundingClientRect();
    return {plot: s.dataset.plot, width: r.width, height: r.height, right: r.right,
            shapes: s.querySelectorAll('path, circle, line').length};
  });
  const out = document.createElement('pre');
  out.id = 'llmperf-probe';
  out.textContent = JSON.stringify({
    plots, errors: window.__errors,
    resources: performance.getEntriesByType('resource').map(r => r.name),
    title: document.title, bodyWidth: document.body.scrollWidth});
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium installed (run scripts/install_chromium.sh)")


def run_chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
           "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args,
           page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def probe(tmp_path: Path, html: str, name: str) -> dict[str, Any]:
    instrumented = tmp_path / name
    instrumented.write_text(html.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    proc = run_chromium(tmp_path, instrumented, "--virtual-time-budget=5000", "--dump-dom")
    match = re.search(r'<pre id="llmperf-probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"the page did not load in Chromium: {proc.stderr[-2000:]}"
    text = match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace(
        "&gt;", ">").replace("&amp;", "&")
    return json.loads(text)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# ---------------------------------------------------------------------------------------------
# llmperf compare, for real


def llmperf(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry, as a user runs it, in the repository."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["LLMPERF_CACHE_DIR"] = str(root.parent / "cache")  # nothing may need the real model
    return subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def worktrees(root: Path) -> list[str]:
    return [ln for ln in git(root, "worktree", "list").splitlines() if ln.strip()]


# ---------------------------------------------------------------------------------------------
# Multi-turn sessions against the oracle

TTFT_MS, ITL_MS, PREFILL_MS = 20.0, 2.0, 1.0


def multiturn_oracle(prefix_cache: bool) -> OracleServer:
    return OracleServer(OracleConfig(ttft_ms=TTFT_MS, itl_ms=ITL_MS,
                                     prefill_ms_per_token=PREFILL_MS,
                                     prefix_cache=prefix_cache))

