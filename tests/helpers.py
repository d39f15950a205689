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
  ``ab_results_doc()``: an --llmperf-ab test whose paired A/B regressed.
- Chromium: ``chromium()``, ``run_chromium()``, ``probe()``, ``png_size()``.
- ``llmperf compare``: ``llmperf()`` (the console entry as a process), ``worktrees()``.
- Multi-turn: ``multiturn_oracle()`` and its schedule (``TTFT_MS``, ``ITL_MS``, ``PREFILL_MS``);
  runs made by hand (``turns_run()``, ``turn_record()``), a table row's ``metric_cells()``.
- Baseline stores: a fake profile's runs and files (``STORE_*``, ``tagged_run()``,
  ``save_tagged()``, ``stored_tags()``, ``tagged_baseline()``, ``hostile_run()``,
  ``hostile_save()``, ``baseline_doc()``, ``baseline_doc_with_run()``).
- Deployment: Dockerfiles (``DOCKER``, ``DOCKER_IMAGES``, ``parse_dockerfile()``,
  ``docker_assignments()``), the CI templates' YAML (``load_ci_yaml()``).
- ``alive()``: whether a process runs. ``rapl_zone()``: a powercap zone in a sysfs tree.
- Tokenizers trained offline: ``TOKENIZER_TEXT``, ``wordlevel()``, ``byte_level_bpe()``,
  ``unigram()``, ``save_tokenizer_dir()``.
- ``--llmperf-ab`` / ``compare --served``: ``AB_TEST_FILE``, ``AB_SERVER``, ``ab_entry()``,
  ``ab_metric()``, ``compare_served()``.
- ``hf_dir()``: a Hugging Face checkpoint's shape. ``cli_exit_code()``: ``llmperf`` in process.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmperf.run.metrics import NS_PER_MS, RequestRecord, summarize
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer

if TYPE_CHECKING:
    from pytest_llmperf.run.metrics import RunResult
    from pytest_llmperf.run.workload import Workload
    from pytest_llmperf.store.baselines import Baseline, BaselineStore

ROOT = Path(__file__).resolve().parents[1]


def oracle_bench(server: OracleServer, workload: Workload, *, chat: bool = False,
                 **kwargs: Any) -> RunResult:
    """One ``run_benchmark`` of ``workload`` against the oracle ``server`` through the OpenAI
    engine (its word tokenizer: exact prompt lengths), the engine closed after; ``kwargs`` go
    to ``run_benchmark``."""
    from pytest_llmperf.engines.openai import OpenAIEngine
    from pytest_llmperf.run.bench import run_benchmark
    from pytest_llmperf.testing.oracle import WordTokenizer

    engine = OpenAIEngine(server.url, tokenizer=WordTokenizer(), chat=chat)
    try:
        return run_benchmark(engine, workload, **kwargs)
    finally:
        engine.close()

#: Third-party modules (top-level names) that loading the plugin must not import
#: (tests/unit/test_layout.py reads it from the source, tests/sessions/test_layout_session.py
#: checks it in a real session).
HEAVY = ("numpy", "scipy", "git", "jinja2", "rich", "psutil", "llama_cpp")

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


AB_LABEL_B = "B (threads=1)"
AB_UNDECIDED = ("undecided: tpot_p50_ms +8.0% vs baseline 05c0ffee05c0 (beyond the 5% "
                "tolerance; inconclusive: one run on each side); rerun with repeats")


def ab_results_doc() -> dict[str, Any]:
    """One --llmperf-ab test, test_decode: A's last run kept as the test's run (``a_run`` 0),
    B 70% slower in output tokens per second (a regression of the paired A/B, B's last run's
    samples in ``samples_b``), and a stored-gate comparison of A's one run that decides
    nothing (inconclusive metrics, an undecided warning)."""
    a = make_run([20.0, 21.0, 22.0, 23.0], itl_ms=5.0, tokens=16,
                 started_at="2026-11-22T09:00:00Z")
    samples_b = make_samples([21.0, 22.0, 24.0, 26.0], itl_ms=50 / 3, tokens=16)

    def metric(name: str, a_value: float, b_value: float, verdict: str, gated: bool = True,
               ) -> dict[str, Any]:
        change = (b_value - a_value) / a_value * 100
        return {"metric": name, "baseline": a_value, "current": b_value, "change_pct": change,
                "ci_low_pct": change - 3, "ci_high_pct": change + 3, "verdict": verdict,
                "gated": gated, "tolerance_pct": 5.0, "method": "paired", "n_baseline": 10,
                "n_current": 10, "pairs_run": 10}

    entry = {
        "verdict": "regression", "passed": False, "pairs": 10, "stages": 2, "alpha": 0.01,
        "message": f"{AB_LABEL_B} vs A: regression after 10 interleaved pairs (2 stage(s))",
        "elapsed_s": 4.0, "label_a": "A", "label_b": AB_LABEL_B, "interleave": "requests",
        "pairs_per_metric": {"ttft_p50_ms": 10, "tpot_p50_ms": 10, "output_tps": 10},
        "metrics": [metric("ttft_p50_ms", 21.5, 21.7, "ok"),
                    metric("tpot_p50_ms", 5.0, 50 / 3, "regression"),
                    metric("output_tps", 150.0, 45.0, "regression"),
                    metric("e2e_p99_ms", 100.0, 270.0, "warn", gated=False)],
        "a_run": 0, "samples_b": samples_b,
    }
    stored = [{"metric": m, "baseline": base, "current": cur,
               "change_pct": (cur - base) / base * 100, "ci_low_pct": None,
               "ci_high_pct": None, "verdict": "inconclusive", "gated": True,
               "tolerance_pct": 5.0, "note": "one run on each side"}
              for m, base, cur in (("ttft_p50_ms", 21.0, 21.5), ("tpot_p50_ms", 4.63, 5.0),
                                   ("output_tps", 155.0, 150.0))]
    test = {"nodeid": "test_suite.py::test_decode", "outcome": "passed",
            "thresholds": {"gate": ["ttft_p50_ms", "tpot_p50_ms", "output_tps"]},
            "message": "", "runs": [a], "ab": [entry],
            "comparison": {"baseline_commit": "05c0ffee" * 5, "profile_id": PROFILE,
                           "status": "compared", "gate": "undecided",
                           "message": "compared with 05c0ffee05c0 (main): 1 run(s) vs 1",
                           "warnings": [AB_UNDECIDED], "metrics": stored}}
    return {"schema": "pytest-llmperf/results", "schema_version": 1,
            "created": "2026-11-22T09:02:00+00:00", "host": dict(HOST), "tests": [test]}


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


def code_spans(text: str) -> tuple[str, list[str]]:
    """CommonMark's reading of ``text``'s code: (the text outside fenced code blocks and code
    spans, the contents of the code spans). A fence of n >= 3 backticks ends at a line of n or
    more; a run of n backticks ends at the next run of exactly n (none: it is literal); a
    backslash outside code escapes the next character."""
    lines: list[str] = []
    fence = ""
    for line in text.split("\n"):
        run = re.match(r"`{3,}", line)
        if fence:
            if run and len(run.group()) >= len(fence) and not line.strip("`").strip():
                fence = ""
            continue
        if run and "`" not in line[run.end():]:  # an info string holds no backtick
            fence = run.group()
            continue
        lines.append(line)
    flat = "\n".join(lines)
    outside: list[str] = []
    spans: list[str] = []
    i = 0
    while i < len(flat):
        if flat[i] == "\\":
            outside.append(flat[i:i + 2])
            i += 2
            continue
        if flat[i] != "`":
            outside.append(flat[i])
            i += 1
            continue
        opening = re.compile(r"`+").match(flat, i)
        assert opening is not None
        closing = next((m for m in re.finditer(r"`+", flat[opening.end():])
                        if len(m.group()) == len(opening.group())), None)
        if closing is None:
            outside.append(opening.group())
            i = opening.end()
            continue
        spans.append(flat[opening.end(): opening.end() + closing.start()])
        outside.append(" ")
        i = opening.end() + closing.end()
    return "".join(outside), spans


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


# ---------------------------------------------------------------------------------------------
# Baseline stores: fake runs of one fake profile (tests/unit/store, tests/sessions)

STORE_SHA = "c" * 40
STORE_SHA2 = "d" * 40
STORE_PROFILE = {"engine": {"kind": "fake", "version": "1"}, "hardware": {"cpu_cores": 2}}
STORE_NODE = "t.py::test_x"
STORE_REL = f"p1/{STORE_SHA}.json"


def tagged_run(tag: str, started: str = "2026-01-01T00:00:00+00:00", value: float = 10.0
               ) -> dict[str, Any]:
    """A stored run known by its ``client.tag`` (test_stores*)."""
    return {"summary": {"ttft_p50_ms": value, "tpot_p50_ms": 10.0}, "started_at": started,
            "workload": {"requests": 2}, "engine": {"kind": "fake"}, "client": {"tag": tag},
            "samples": []}


def save_tagged(root: Path, tags: list[str], sha: str = STORE_SHA, node: str = STORE_NODE,
                profile: dict[str, Any] | None = None) -> Path:
    """One run per tag saved to the directory store at ``root``."""
    from pytest_llmperf.store.baselines import BaselineStore

    return BaselineStore(root).save(
        profile_id="p1", profile=profile or STORE_PROFILE, commit=sha, branch="main",
        dirty=False, committed_at="2026-01-01T00:00:00+00:00",
        tests={node: [tagged_run(t, tag_started(t)) for t in tags]})


def tag_started(tag: str) -> str:
    """A start time that is the tag's own (the same run saved by two jobs is one run)."""
    n = zlib.crc32(tag.encode())
    return f"2026-01-01T{n % 24:02d}:{n // 24 % 60:02d}:{n // 1440 % 60:02d}+00:00"


def stored_tags(root: Path, sha: str = STORE_SHA, node: str = STORE_NODE) -> list[str]:
    from pytest_llmperf.store.baselines import BaselineStore

    return [r["client"]["tag"] for r in BaselineStore(root).load("p1", sha).runs(node)]


def tagged_baseline(path: str, runs: list[dict[str, Any]], saved: str,
                    profile: dict[str, Any] | None = None, outcome: str = "passed") -> Baseline:
    from pytest_llmperf.store.baselines import Baseline

    return Baseline(path=Path(path), profile_id="p1", profile=profile or STORE_PROFILE,
                    commit=STORE_SHA, branch="main", dirty=False,
                    committed_at="2026-01-01T00:00:00+00:00", saved_at=saved,
                    tests={STORE_NODE: {"runs": runs, "outcome": outcome}})


def hostile_run(tag: str, value: float = 10.0, samples: int = 0) -> dict[str, Any]:
    """A stored run with ``samples`` samples (test_hostile_store*)."""
    return {"summary": {"ttft_p50_ms": value, "tpot_p50_ms": 10.0, "output_tps": 100.0},
            "started_at": "2026-01-01T00:00:00+00:00", "workload": {"requests": 2},
            "engine": {"kind": "fake"}, "client": {"tag": tag},
            "samples": [{"ttft_ms": float(i), "ok": True} for i in range(samples)]}


def hostile_save(st: BaselineStore, runs: list[dict[str, Any]], sha: str = STORE_SHA,
                 dirty: bool = False) -> Path:
    return st.save(profile_id="p1", profile=STORE_PROFILE, commit=sha, branch="main",
                   dirty=dirty, committed_at="2026-01-01T00:00:00+00:00",
                   tests={STORE_NODE: runs})


def baseline_doc(**changes: Any) -> dict[str, Any]:
    """A baseline file's document, ``changes`` applied (the mistyped files of issue 15)."""
    doc: dict[str, Any] = {
        "schema": "pytest-llmperf/baseline", "schema_version": 1, "profile_id": "p1",
        "profile": STORE_PROFILE, "commit": STORE_SHA, "branch": "main", "dirty": False,
        "committed_at": "2026-01-01T00:00:00+00:00", "saved_at": "2026-01-01T00:00:00+00:00",
        "tests": {STORE_NODE: {"runs": [hostile_run("a")]}},
    }
    doc.update(changes)
    return doc


def baseline_doc_with_run(**fields: Any) -> dict[str, Any]:
    """``baseline_doc()`` whose one run has ``fields`` changed."""
    r = hostile_run("a")
    r.update(fields)
    return baseline_doc(tests={STORE_NODE: {"runs": [r]}})


# ---------------------------------------------------------------------------------------------
# Dockerfiles (tests/unit/deploy/test_docker.py, tests/e2e/test_docker_e2e.py)

DOCKER = ROOT / "docker"
DOCKER_IMAGES = ("Dockerfile.cpu", "Dockerfile.vllm")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile: continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    text, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not text):
            continue
        if not text:
            start = number
        if stripped.endswith("\\"):
            text += stripped[:-1] + " "
            continue
        text += stripped
        keyword, _, args = text.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        text = ""
    assert not text, f"{path}: a continued line at the end"
    return out


def docker_assignments(args: str) -> dict[str, str]:
    """``K=V K2="V 2"`` (ENV, ARG, LABEL) as a mapping; an ARG without a default is ''."""
    out = {}
    for word in shlex.split(args):
        key, _, value = word.partition("=")
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# CI templates (tests/unit/deploy/test_ci_templates.py, tests/e2e/test_ci_templates_e2e.py)


def load_ci_yaml(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text())
    if True in data:  # YAML 1.1 reads a bare `on` key as true
        data["on"] = data.pop(True)
    return data


# ---------------------------------------------------------------------------------------------
# Processes


def alive(pid: int) -> bool:
    """Whether the process ``pid`` runs (Linux; a zombie is dead for our purpose)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# RAPL (tests/unit/run/test_energy.py, tests/sessions/test_energy_session.py)

MAX_RANGE = 262143328850  # what a real package zone reports as max_energy_range_uj


def rapl_zone(root: Path, name: str, label: str, energy: int,
              max_range: int = MAX_RANGE) -> Path:
    """A powercap zone directory as the kernel lays it out (name, energy_uj,
    max_energy_range_uj, plus files we do not read)."""
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    (d / "enabled").write_text("1\n")
    return d


# ---------------------------------------------------------------------------------------------
# Hugging Face tokenizers trained offline (``tokenizers`` imported on first use: a PyO3
# extension cannot be initialised twice in one interpreter, so a test module that also runs
# in-process pytester sessions imports it first itself)

TOKENIZER_TEXT = """\
The river ran past the old stone house, and the light on the water was green in the evening.
She opened the window, put the paper on the table, and listened to the music from the garden.
They had walked for three days before they came to the town, and the people there were kind.
He said that the first year was the hardest, because there was little work and much to learn.
A model turns a prompt into tokens, and each new token depends on every token before it.
When many people send requests at the same time, the server puts them in one batch.
Latency is the time a person waits for the first word; throughput is how many words the
machine makes in a second. Both matter, and a change that helps one can hurt the other.
"""


def wordlevel() -> Any:
    """WordLevel: no word-piece markers at all."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([TOKENIZER_TEXT],
                            trainers.WordLevelTrainer(special_tokens=["[UNK]", "<s>"]))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok


def byte_level_bpe(merges: int = 300) -> Any:
    """Byte-level BPE (``Ġ``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator([TOKENIZER_TEXT], trainers.BpeTrainer(
        vocab_size=len(alphabet) + 2 + merges, special_tokens=["<s>", "</s>"],
        initial_alphabet=alphabet, show_progress=False))
    return tok


def unigram() -> Any:
    """A SentencePiece-like Unigram (``▁``, Metaspace)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator([TOKENIZER_TEXT], trainers.UnigramTrainer(
        vocab_size=200, special_tokens=["<unk>", "<s>"], unk_token="<unk>",
        show_progress=False))
    return tok


def save_tokenizer_dir(tok: Any, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    return path


# ---------------------------------------------------------------------------------------------
# Multi-turn results made by hand (tests/unit/report, tests/sessions: test_turns_report*)


def metric_cells(row: Node) -> dict[str, str]:
    """A rendered table row's cells by their ``data-metric``."""
    return {td.attrs["data-metric"]: td.text() for td in row.find_all("td")
            if "data-metric" in td.attrs}


def turn_record(session: int, turn: int, ttft_ms: float | None, prompt_tokens: int,
                warmup: bool = False) -> dict[str, Any]:
    """One request of a multi-turn run; ``ttft_ms=None``: it failed (transport)."""
    send = (session * 10 + turn) * 1_000_000_000
    r = RequestRecord(index=session * 10 + turn, prompt_tokens=prompt_tokens, warmup=warmup,
                      send_ns=send, session=session, turn=turn)
    if ttft_ms is None:
        r.error, r.error_kind = "connection reset", "transport"
    else:
        first = send + int(ttft_ms * 1e6)
        r.chunk_ns, r.chunk_tokens, r.done_ns = [first, first + 1_000_000], [1, 1], first + 2
    return r.to_dict()


def turns_run(ttfts: dict[tuple[int, int], float | None], **summary: Any) -> dict[str, Any]:
    """A multi-turn run: a request per (session, turn), TTFTs as given, plus a warm-up."""
    samples = [turn_record(s, t, v, 10 * t) for (s, t), v in sorted(ttfts.items())]
    samples.append(turn_record(9, 1, 999.0, 5, warmup=True))  # left out everywhere
    return {"summary": {"requests": len(ttfts), "errors": 0, **summary}, "samples": samples,
            "workload": {"requests": 2, "input_tokens": 10, "output_tokens": 2,
                         "concurrency": 2, "turns": 3, "think_time_s": [0.5, 1.0]}}


# ---------------------------------------------------------------------------------------------
# --llmperf-ab and llmperf compare --served (tests/sessions, tests/e2e: test_ab_flag*; the
# ``served_repo`` fixture is in conftest.py)

AB_WORKLOAD = "Workload(input_tokens=8, output_tokens=6, requests=3)"
AB_TEST_FILE = f"""
import pytest
from pytest_llmperf import Workload

@pytest.mark.llmperf(gate=["tpot_p50_ms"])
def test_decode(llmperf_bench, llm_engine):
    llmperf_bench(llm_engine, {AB_WORKLOAD})
"""

# The oracle server at the ITL that itl.json in its working directory says.
AB_SERVER = """
import json, sys
from pytest_llmperf.testing.oracle import main
itl = json.load(open("itl.json"))["itl_ms"]
main(["--ttft-ms", "5", "--itl-ms", str(itl), *sys.argv[1:]])
"""


def ab_entry(path: Path, interleave: str = "requests") -> dict[str, Any]:
    """The one A/B of the one test in the results file at ``path`` (interleaved by request,
    unless ``interleave`` says otherwise)."""
    (test,) = json.loads(path.read_text())["tests"]
    (entry,) = test["ab"]
    assert entry["interleave"] == interleave, entry["message"]
    return dict(entry)


def ab_metric(entry: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in entry["metrics"] if m["metric"] == name)


def compare_served(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``llmperf compare ARGS --served "python serve.py" -- test_served.py`` in ``root``."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    cmd = f"{sys.executable} serve.py --port {{port}}"
    return subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", "compare", *args,
                           "--served", cmd, "--", "test_served.py"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------------
# Models


def hf_dir(path: Path, weights: bytes = b"weights") -> Path:
    """A directory shaped as a Hugging Face checkpoint (its contents are not a model)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama",
                                                  "torch_dtype": "bfloat16"}))
    (path / "model.safetensors").write_bytes(weights)
    return path


# ---------------------------------------------------------------------------------------------
# The llmperf command, in process


def cli_exit_code(argv: list[str]) -> int:
    """``llmperf ARGV`` through ``main``: its return value, or the code argparse exits with."""
    from pytest_llmperf.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
