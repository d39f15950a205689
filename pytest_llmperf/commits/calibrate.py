"""``llmperf calibrate -- [pytest args]``: A/A sessions -> per test, the noise, what the gates
can see at the current settings, and what they would need to see the test's tolerance.

The same suite runs K times (default 5) as whole ``pytest --llmperf`` sessions in the current
directory (``bisect.run_session``, each writing ``--llmperf-json`` into a temporary
directory). Nothing changes between them, so every difference is noise. Per test and gated
metric (``analyse``, pure):

- ``cv_pct``: the session-to-session spread (sd of the log of each session's value, the
  median of its runs, as a percent): the job-to-job noise a stored baseline sees;
  ``run_cv_pct``: the run-to-run spread within sessions when the test repeats (``repeats``).
- ``stored``: the stored gate's MDE comparing one session with the baseline's once 5 earlier
  baselines give the noise (the gate's ``history`` estimate: var = 2 var_session, df 4, alpha
  split over the gated metrics), and the repeats per job that bring it within the tolerance
  (None: the job-to-job part alone is beyond it; repeats cannot help).
- ``compare``: ``llmperf compare``'s MDE at its default pairs (a pair's log-ratio has
  variance 2 var_session, alpha split over the tests) and the pairs it needs.

The formulas are ``verdict.power``'s (docs/guides/baselines-and-gates.md).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..decision import DEFAULT_ALPHA
from ..store.baselines import run_value
from ..verdict import paired, power
from ..verdict.stats import DEFAULT_MIN_HISTORY, per_metric_alpha
from ..verdict.thresholds import Thresholds, UnknownMetricError
from . import bisect

SCHEMA = "pytest-llmperf/calibration"
VERSION = 1
DEFAULT_SESSIONS = 5
DEFAULT_JSON = "llmperf-calibration.json"


class CalibrateError(ValueError):
    """Bad usage or a session without numbers: one line (exit 2)."""


@dataclass
class Options:
    pytest_args: list[str] = field(default_factory=list)
    sessions: int = DEFAULT_SESSIONS
    alpha: float = DEFAULT_ALPHA
    pairs: int = bisect.DEFAULT_PAIRS
    python: str = sys.executable
    json_path: Path = Path(DEFAULT_JSON)
    cwd: Path = Path(".")


def _sd_log(values: Sequence[float]) -> float | None:
    logs = [math.log(v) for v in values if v > 0 and math.isfinite(v)]
    return statistics.stdev(logs) if len(logs) >= 2 else None


def _pct(sd_log: float | None) -> float | None:
    return None if sd_log is None else math.expm1(sd_log) * 100.0


def metric_noise(metric: str, sessions: Sequence[Sequence[float | None]], *, tolerance_pct: float,
                 alpha_metric: float, alpha_test: float, pairs: int) -> dict[str, Any]:
    """One metric's noise and power from its values per session (each session's runs)."""
    medians = [statistics.median(v) for s in sessions
               if (v := [x for x in s if x is not None and x > 0])]
    sd_s = _sd_log(medians)
    per_session = [[math.log(x) for x in s if x is not None and x > 0] for s in sessions]
    ss = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in per_session if len(g) > 1)
    df_within = sum(len(g) - 1 for g in per_session if len(g) > 1)
    sd_run = math.sqrt(ss / df_within) if df_within else None
    out: dict[str, Any] = {"sessions": len(medians), "cv_pct": _pct(sd_s),
                           "run_cv_pct": _pct(sd_run), "tolerance_pct": tolerance_pct}
    if sd_s is None:
        out["note"] = "fewer than 2 sessions with a value: no noise estimate"
        return out
    r = max(1, round(statistics.fmean(len(g) for g in per_session if g)))
    var_s = sd_s**2
    # The run-to-run part of a session's value, and the job-to-job rest (repeats cannot
    # shrink it). Without repeats the split is unknown: all of it is taken as run-to-run.
    var_run = sd_run**2 if sd_run is not None else var_s * r
    var_job = max(0.0, var_s - var_run / r) if sd_run is not None else 0.0
    df_hist = DEFAULT_MIN_HISTORY - 1.0
    stored_mde = power.mde_pct(metric, math.sqrt(2.0 * var_s), df_hist, alpha_metric)
    stored_needs = power.repeats_needed(metric, var_run, tolerance_pct, alpha_metric,
                                        var_job=var_job, df_fixed=df_hist)
    sd_pair = math.sqrt(2.0 * var_s)
    floor = paired.pairs_needed(alpha_test)
    cmp_mde = (power.mde_pct(metric, sd_pair / math.sqrt(pairs), pairs - 1.0, alpha_test)
               if pairs >= floor else math.inf)
    cmp_needs = power.pairs_needed(metric, sd_pair, tolerance_pct, alpha_test, least=floor)
    # Why no number of repeats is enough: the job-to-job part alone, or more than MAX_N.
    beyond = "" if stored_needs is not None else (
        "job-to-job noise" if var_job > 0 and power.repeats_needed(
            metric, 0.0, tolerance_pct, alpha_metric, var_job=var_job,
            df_fixed=df_hist) is None else f"more than {power.MAX_N}")
    out["stored"] = {"repeats": r, "mde_pct": power.finite(stored_mde),
                     "blind": stored_mde > tolerance_pct, "needs_repeats": stored_needs,
                     "needs_repeats_beyond": beyond}
    out["compare"] = {"pairs": pairs, "mde_pct": power.finite(cmp_mde),
                      "blind": cmp_mde > tolerance_pct, "needs_pairs": cmp_needs}
    if sd_run is None:
        out["note"] = ("one run per session: the run-to-run and job-to-job noise cannot be "
                       "split; the repeats needed assume all of it is run-to-run")
    return out


def analyse(docs: Sequence[Mapping[str, Any]], *, alpha: float = DEFAULT_ALPHA,
            pairs: int = bisect.DEFAULT_PAIRS) -> dict[str, Any]:
    """The calibration document from K ``--llmperf-json`` results documents of one suite."""
    tests: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for doc in docs:
        for test in doc.get("tests") or []:
            key = str(test.get("key") or test.get("nodeid"))
            if key not in tests:
                tests[key] = {"thresholds": dict(test.get("thresholds") or {}), "runs": []}
                order.append(key)
            tests[key]["runs"].append([r for r in test.get("runs") or []
                                       if isinstance(r, Mapping)])
    alpha_test = alpha / max(1, len(order))  # llmperf compare splits alpha over the tests
    out: dict[str, Any] = {}
    for key in order:
        entry = tests[key]
        try:
            parsed = Thresholds.of(entry["thresholds"])
            gated = parsed.gated_metrics()[0]
        except (UnknownMetricError, ValueError) as exc:
            out[key] = {"error": str(exc)}
            continue
        alpha_metric = per_metric_alpha(alpha, len(gated))
        metrics = {}
        for m in gated:
            values = [[run_value(r, m) for r in runs] for runs in entry["runs"]]
            if all(v is None for s in values for v in s):
                continue
            metrics[m] = metric_noise(m, values, tolerance_pct=parsed.tolerance_for(m),
                                      alpha_metric=alpha_metric, alpha_test=alpha_test,
                                      pairs=pairs)
        out[key] = {"sessions": len(entry["runs"]), "metrics": metrics}
    return {"schema": SCHEMA, "version": VERSION, "sessions": len(docs), "alpha": alpha,
            "pairs": pairs, "tests": out}


def _cell(x: Any, unit: str = "%") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.1f}{unit}"
    return str(x)


def _needs(stored: Mapping[str, Any]) -> str:
    if not stored:
        return "-"
    if stored.get("needs_repeats") is not None:
        return str(stored["needs_repeats"])
    beyond = str(stored.get("needs_repeats_beyond") or "")
    return f">{power.MAX_N}" if beyond.startswith("more than") else "none helps"


def render_table(result: Mapping[str, Any]) -> str:
    """The printed table: per test and gated metric, the noise and what each gate sees."""
    rows = [("test", "metric", "CV", "run CV", "tolerance", "stored MDE", "repeats needed",
             f"compare MDE ({result.get('pairs')} pairs)", "pairs needed")]
    for key, t in (result.get("tests") or {}).items():
        for m, v in (t.get("metrics") or {}).items():
            st, cp = v.get("stored") or {}, v.get("compare") or {}
            rows.append((key, m, _cell(v.get("cv_pct")), _cell(v.get("run_cv_pct")),
                         _cell(float(v.get("tolerance_pct", 0.0))),
                         _cell(st.get("mde_pct")) + (" blind" if st.get("blind") else ""),
                         _needs(st),
                         _cell(cp.get("mde_pct")) + (" blind" if cp.get("blind") else ""),
                         _cell(cp.get("needs_pairs")) if cp else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(f"{c:{widths[i]}}" for i, c in enumerate(r)).rstrip() for r in rows]
    lines += ["", f"{result.get('sessions')} A/A sessions; CV: session-to-session spread; "
              "stored MDE: one job against its baseline with 5 earlier baselines; compare MDE: "
              "llmperf compare; MDE: the smallest slowdown seen with 80% power at alpha "
              f"{result.get('alpha')}; blind: MDE above the tolerance; 'none helps': the "
              "job-to-job noise alone is beyond the tolerance"]
    return "\n".join(lines)


def run(opts: Options, err: TextIO | None = None, out: TextIO | None = None) -> dict[str, Any]:
    """Run the A/A sessions, analyse them, write the JSON file and print the table."""
    err = err or sys.stderr
    out = out or sys.stdout
    if opts.sessions < 2:
        raise CalibrateError(f"--sessions {opts.sessions}: at least 2 sessions are needed to "
                             "see their spread")
    docs = []
    with tempfile.TemporaryDirectory(prefix="llmperf-calibrate-") as tmp:
        for i in range(opts.sessions):
            print(f"[calibrate] A/A session {i + 1} of {opts.sessions}", file=err, flush=True)
            path = Path(tmp) / f"{i:03d}.json"
            try:
                bisect.run_session(opts.python, opts.cwd, opts.pytest_args, path,
                                   bisect.Commit("working tree", f"A/A session {i + 1}"))
            except bisect.BisectError as exc:
                raise CalibrateError(str(exc)) from None
            docs.append(json.loads(path.read_text(encoding="utf-8")))
    result = analyse(docs, alpha=opts.alpha, pairs=opts.pairs)
    opts.json_path.write_text(json.dumps(bisect.finite(result), indent=1, sort_keys=True)
                              + "\n", encoding="utf-8")
    print(render_table(result), file=out)
    print(f"\nwrote {opts.json_path}", file=out)
    return result
