"""Two testbeds compared (``run/testbed.py`` records one with every run), and the noise of a
testbed's own baseline history.

- Another hardware class (CPU model, GPU model or count) is not a comparison: ``refused``
  names the difference. The profile (``store/profile.py``) already keys baselines by CPU model
  and GPU name, so the stored gate never finds such a baseline by itself; this is the explicit
  refusal where one is named (``--llmperf-compare``) or was saved under the same profile.
- A difference in what changes speed on the same hardware (governor, SMT, CPU quota, usable
  cores, memory; GPU power limit, application clocks, MIG mode, persistence, driver, CUDA)
  is compared, with a note naming each difference.
- A noisy testbed: a gated metric whose run-to-run coefficient of variation over the
  baseline history (one value per earlier baseline, the mean of its runs) exceeds
  ``NOISY_CV`` (10%) with at least ``MIN_NOISE_POINTS`` baselines: the verdict is labelled
  ``noisy testbed``, since a 5% tolerance cannot be held on such a machine.

Pure: plain dicts in, plain dicts out.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from ..store.baselines import run_value

NOISY_CV = 0.10
MIN_NOISE_POINTS = 3
CLASS_FIELDS = ("cpu_model",)
CLASS_GPU_FIELDS = ("name",)
SPEED_FIELDS = ("governor", "smt", "cpu_quota", "cpus", "memory_mb")
SPEED_GPU_FIELDS = ("power_limit_w", "app_clock_sm_mhz", "app_clock_mem_mhz", "mig",
                    "persistence", "driver", "cuda")


def testbed_of(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The testbed the first run that has one recorded (None: saved before testbeds were)."""
    for run in runs:
        client = run.get("client")
        bed = client.get("testbed") if isinstance(client, Mapping) else None
        if isinstance(bed, Mapping) and bed:
            return dict(bed)
    return None


def _gpus(bed: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    gpus = bed.get("gpus")
    return [g for g in gpus if isinstance(g, Mapping)] if isinstance(gpus, list) else []


def _show(value: Any) -> str:
    return "unknown" if value is None else repr(value)


def hardware_difference(base: Mapping[str, Any], cur: Mapping[str, Any]) -> str | None:
    """How the two testbeds' hardware classes differ (None: the same class, as far as both
    recorded it)."""
    for name in CLASS_FIELDS:
        if base.get(name) is not None and cur.get(name) is not None \
                and base.get(name) != cur.get(name):
            return f"{name}: baseline {_show(base.get(name))}, now {_show(cur.get(name))}"
    ga, gb = _gpus(base), _gpus(cur)
    if "gpus" in base and "gpus" in cur and len(ga) != len(gb):
        return f"GPUs: baseline {len(ga)}, now {len(gb)}"
    for i, (a, b) in enumerate(zip(ga, gb, strict=False)):
        for name in CLASS_GPU_FIELDS:
            if a.get(name) != b.get(name):
                return (f"gpus.{i}.{name}: baseline {_show(a.get(name))}, "
                        f"now {_show(b.get(name))}")
    return None


def speed_differences(base: Mapping[str, Any], cur: Mapping[str, Any]) -> list[str]:
    """Each setting that changes speed and differs, as ``field: baseline X, now Y``."""
    out = [f"{name}: baseline {_show(base.get(name))}, now {_show(cur.get(name))}"
           for name in SPEED_FIELDS if base.get(name) != cur.get(name)]
    for i, (a, b) in enumerate(zip(_gpus(base), _gpus(cur), strict=False)):
        out += [f"gpus.{i}.{name}: baseline {_show(a.get(name))}, now {_show(b.get(name))}"
                for name in SPEED_GPU_FIELDS if a.get(name) != b.get(name)]
    return out


def history_cv(history: Sequence[Sequence[Mapping[str, Any]]], metric: str) -> float | None:
    """The coefficient of variation of ``metric`` over the history (one value per
    baseline: the mean of its runs); None with fewer than ``MIN_NOISE_POINTS`` values."""
    points = []
    for runs in history:
        values = [v for v in (run_value(r, metric) for r in runs)
                  if isinstance(v, int | float) and not isinstance(v, bool)]
        if values:
            points.append(sum(values) / len(values))
    if len(points) < MIN_NOISE_POINTS:
        return None
    mean = statistics.fmean(points)
    return statistics.stdev(points) / abs(mean) if mean else None


def noisy_metrics(history: Sequence[Sequence[Mapping[str, Any]]],
                  metrics: Sequence[str]) -> dict[str, float]:
    """The metrics whose history CV exceeds ``NOISY_CV``, with their CV."""
    out = {}
    for metric in metrics:
        cv = history_cv(history, metric)
        if cv is not None and cv > NOISY_CV:
            out[metric] = round(cv, 4)
    return out


def compare_testbeds(baseline_runs: Sequence[Mapping[str, Any]],
                    current_runs: Sequence[Mapping[str, Any]],
                    history: Sequence[Sequence[Mapping[str, Any]]] = (),
                    metrics: Sequence[str] = ()) -> dict[str, Any]:
    """``refused`` (another hardware class: not a comparison), ``differences`` (what
    changes speed and differs), ``noisy`` (metric -> history CV above ``NOISY_CV``) and
    ``notes``, the lines a comparison's message adds."""
    out: dict[str, Any] = {"refused": None, "differences": [], "noisy": {}, "notes": []}
    base, cur = testbed_of(baseline_runs), testbed_of(current_runs)
    if base is not None and cur is not None:
        other = hardware_difference(base, cur)
        if other is not None:
            out["refused"] = (f"not compared: the baseline ran on another hardware class "
                              f"({other}); numbers from different hardware are not a "
                              "comparison")
            out["notes"].append(out["refused"])
            return out
        out["differences"] = speed_differences(base, cur)
        if out["differences"]:
            out["notes"].append("another testbed setting that changes speed ("
                                + "; ".join(out["differences"]) + ")")
    out["noisy"] = noisy_metrics(history, metrics)
    if out["noisy"]:
        shown = ", ".join(f"{m} CV {cv:.0%}" for m, cv in out["noisy"].items())
        out["notes"].append(f"noisy testbed: run-to-run spread over the baseline history "
                            f"above {NOISY_CV:.0%} ({shown})")
    return out
