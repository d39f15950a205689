"""The baseline store under hostile or careless use (issue #15): concurrent saves from many
processes, interrupted saves, corrupt and mistyped baseline files, dirty saves, a shallow
clone, and a pytest rootdir moved outside the repository.

Split by tier from tests/test_hostile_store.py: these are its unit tests; the others are in
tests/sessions/test_hostile_store_session.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import STORE_NODE as NODE
from helpers import STORE_SHA as SHA
from helpers import baseline_doc as _doc
from helpers import baseline_doc_with_run as _with_run
from helpers import hostile_run as run
from helpers import hostile_save as save

from pytest_llmperf.store import baselines as store
from pytest_llmperf.store.baselines import BaselineError, BaselineStore

# --------------------------------------------------- class 8a: interrupted saves' leftovers


def test_temporaries_of_an_interrupted_save_are_never_read_and_cleaned_when_stale(
    tmp_path: Path,
) -> None:
    st = BaselineStore(tmp_path / "baselines")
    path = save(st, [run("first")])
    # What atomic_write_text leaves when the process dies between mkstemp and the rename.
    stale = path.parent / f".{path.name}.k2j3h4.tmp"
    stale.write_text(path.read_text()[:100])
    fresh = path.parent / f".{path.name}.a8s7d6.tmp"
    fresh.write_text("{")
    old = time.time() - store.LOCK_TIMEOUT_S - 10
    os.utime(stale, (old, old))
    assert [e.path for e in st.entries(dirty=None)] == [path]
    loaded, errors = st.load_all(dirty=None)
    assert [b.path for b in loaded] == [path] and errors == []
    save(st, [run("second")])
    assert not stale.exists()
    assert fresh.exists()  # it may belong to a save still running elsewhere
    assert [r["client"]["tag"] for r in store.load(path).runs(NODE)] == ["first", "second"]


# ------------------------------------------------------------ class 6: mistyped files


MISTYPED = [
    (_with_run(summary={"ttft_p50_ms": "fast"}), "summary['ttft_p50_ms'] is \"fast\""),
    (_with_run(summary={"ttft_p50_ms": True}), "summary['ttft_p50_ms'] is true"),
    (_with_run(summary={"ttft_p50_ms": [1]}), "summary['ttft_p50_ms'] is [1]"),
    (_with_run(summary=[1, 2]), "runs[0].summary is [1, 2]"),
    (_with_run(samples={"a": 1}), "runs[0].samples is"),
    (_with_run(samples=[1, 2]), "runs[0].samples[0] is 1"),
    (_with_run(workload="w"), "runs[0].workload is \"w\""),
    (_doc(tests={NODE: {"runs": {"a": 1}}}), "has no valid 'runs' list"),
    (_doc(tests={NODE: {"runs": [7]}}), "runs[0] is 7"),
    (_doc(tests={NODE: ["x"]}), f"tests[{NODE!r}] is [\"x\"]"),
    (_doc(tests=[]), "'tests' missing or not a object"),
    (_doc(committed_at=20260101), "'committed_at' is 20260101"),
    (_doc(branch=3), "'branch' is 3"),
    (_doc(dirty="no"), "'dirty' is \"no\""),
]


@pytest.mark.parametrize("doc,needle", MISTYPED)
def test_mistyped_baselines_are_one_line_errors_naming_file_and_field(
    tmp_path: Path, doc: dict[str, Any], needle: str,
) -> None:
    path = tmp_path / "p1" / f"{SHA}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    with pytest.raises(BaselineError) as err:
        store.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: malformed baseline (") and needle in msg
    assert "\n" not in msg


def test_non_finite_numbers_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p1" / f"{SHA}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_doc()).replace("10.0", "Infinity", 1))
    with pytest.raises(BaselineError, match="Infinity is not a number JSON allows"):
        store.load(path)
    path.write_text(json.dumps(_doc()).replace("10.0", "1e400", 1))  # overflows to inf
    with pytest.raises(BaselineError, match="is inf, not a finite number"):
        store.load(path)
    path.write_text(json.dumps(_doc()).replace("10.0", "1" + "0" * 400, 1))  # a huge int
    with pytest.raises(BaselineError, match="not a finite number"):
        store.load(path)


# --------------------------------------------------------- class 8b: dirty saves apart


def test_dirty_runs_go_to_their_own_file(tmp_path: Path) -> None:
    st = BaselineStore(tmp_path)
    clean = save(st, [run("clean")])
    dirty = save(st, [run("dirty")], dirty=True)
    assert clean.name == f"{SHA}.json" and dirty.name == f"{SHA}.dirty.json"
    assert [r["client"]["tag"] for r in store.load(clean).runs(NODE)] == ["clean"]
    assert store.load(clean).dirty is False
    d = store.load(dirty)
    assert d.dirty is True and [r["client"]["tag"] for r in d.runs(NODE)] == ["dirty"]
    assert [e.path for e in st.entries()] == [clean]  # the default: clean files only
    assert [e.path for e in st.entries(dirty=None)] == [dirty, clean]
    assert st.commits("p1") == {SHA} and st.commits("p1", dirty=True) == {SHA}
    # A dirty file that says it is clean lies about where it belongs.
    doc = json.loads(dirty.read_text())
    doc["dirty"] = False
    dirty.write_text(json.dumps(doc))
    with pytest.raises(BaselineError, match="does not match where it lies"):
        store.load(dirty)
