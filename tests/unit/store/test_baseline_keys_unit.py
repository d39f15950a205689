"""Baseline keys (store/keys.py): pure path arithmetic, no pytest session, no git."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.commits.bisect import session_results
from pytest_llmperf.report.view import History, results_key
from pytest_llmperf.store.baselines import Baseline
from pytest_llmperf.store.keys import TestKey, canonical_keys, split_nodeid, stable_key

REPO = Path("/home/me/repo")
KEY = "tests/test_perf.py::test_chat[8-16]"


def test_split_nodeid() -> None:
    assert split_nodeid("a/t.py::C::t[x::y]") == ("a/t.py", "::C::t[x::y]")
    assert split_nodeid("a/t.py") == ("a/t.py", "")


@pytest.mark.parametrize(("nodeid", "rootdir"), [
    (KEY, REPO),                                                   # the usual case
    ("home/me/repo/" + KEY, Path("/")),                            # --opt /path: rootdir /
    ("me/repo/" + KEY, Path("/home")),
    ("test_perf.py::test_chat[8-16]", REPO / "tests"),             # an ini file in tests/
    ("../" + KEY, REPO / "docs"),                                  # a file above the rootdir
])
def test_the_key_is_relative_to_the_repository_wherever_the_rootdir_is(
    nodeid: str, rootdir: Path,
) -> None:
    assert stable_key(nodeid, rootdir, REPO) == KEY
    assert TestKey.of(nodeid, rootdir, REPO).key == KEY


def test_the_items_path_wins_over_the_rootdir() -> None:
    # pytest names a file outside its rootdir relative to an initial path instead.
    nodeid = "test_perf.py::test_chat[8-16]"
    key = TestKey.of(nodeid, Path("/usr"), REPO, REPO / "tests" / "test_perf.py")
    assert key.key == KEY and key.nodeid == nodeid
    assert key.path == ("home", "me", "repo", "tests", "test_perf.py")


def test_without_a_repository_or_outside_it_the_key_is_the_node_id() -> None:
    assert stable_key("t.py::x", Path("/"), None) == "t.py::x"
    assert stable_key("opt/suite/t.py::x", Path("/"), REPO) == "opt/suite/t.py::x"
    assert stable_key("t.py::x", None, REPO) == "t.py::x"


def test_a_symlinked_root_is_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "tests").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert stable_key(KEY, link, real.resolve()) == KEY
    assert stable_key(KEY, real, link) == KEY


def test_the_key_and_the_node_id_are_found_first() -> None:
    key = TestKey.of("home/me/repo/" + KEY, Path("/"), REPO)
    assert key.find({KEY: 1, "home/me/repo/" + KEY: 2}) == KEY
    assert key.find({"home/me/repo/" + KEY: 2, "builds/x/repo/" + KEY: 3}) \
        == "home/me/repo/" + KEY
    assert not key.older(KEY) and key.older("home/me/repo/" + KEY) and not key.older(None)


@pytest.mark.parametrize("old", [
    "home/me/repo/" + KEY,                # saved with the rootdir at /
    "builds/ci/repo/" + KEY,              # at / on another machine
    "test_perf.py::test_chat[8-16]",      # with the rootdir at tests/
])
def test_older_spellings_of_the_same_test_are_found(old: str) -> None:
    key = TestKey.of(KEY, REPO, REPO)
    assert key.key == KEY
    assert key.find({old: 1, "tests/other.py::test_chat[8-16]": 2}) == old


@pytest.mark.parametrize("other", [
    "tests/test_perf.py::test_chat[8-32]",   # another parameter
    "tests/test_perf.py::test_chat",
    "other/test_perf.py::test_chat[8-16]",   # another file of the same name
    "perf.py::test_chat[8-16]",              # not aligned on a path separator
])
def test_other_tests_are_not_taken_for_it(other: str) -> None:
    assert TestKey.of(KEY, REPO, REPO).find({other: 1}) is None


def test_the_nearest_older_spelling_wins() -> None:
    key = TestKey.of(KEY, REPO, REPO)
    stored = {"x/home/me/repo/" + KEY: 1, "repo/" + KEY: 2, "test_perf.py::test_chat[8-16]": 3}
    assert key.find(stored) == "repo/" + KEY
    del stored["repo/" + KEY], stored["x/home/me/repo/" + KEY]
    assert key.find(stored) == "test_perf.py::test_chat[8-16]"


def test_a_baseline_saved_under_an_old_key_is_read_by_the_report() -> None:
    old = Baseline(path=Path("p/c.json"), profile_id="p", profile={}, commit="c" * 40,
                   branch=None, dirty=False, committed_at="", saved_at="",
                   tests={"home/me/repo/" + KEY: {"runs": []}})
    history = History(profiles={"p": [old]})
    test = {"nodeid": "home/me/repo/" + KEY, "key": KEY}
    assert results_key(test) == TestKey(KEY, "home/me/repo/" + KEY)
    assert history.profiles_with(results_key(test)) == ["p"]
    assert history.profiles_with(TestKey.of(KEY, REPO, REPO)) == ["p"]
    assert results_key({"nodeid": KEY}).key == KEY  # results written before keys


def test_canonical_keys_merge_the_spellings_of_one_test_across_baselines() -> None:
    newest = [KEY, "tests/test_other.py::t"]
    older = ["home/me/repo/" + KEY, "test_other.py::t"]
    oldest = ["test_perf.py::test_chat[8-16]", "x.py::t"]
    assert canonical_keys([newest, older, oldest]) == {
        KEY: KEY, "tests/test_other.py::t": "tests/test_other.py::t",
        "home/me/repo/" + KEY: KEY, "test_other.py::t": "tests/test_other.py::t",
        "test_perf.py::test_chat[8-16]": KEY, "x.py::t": "x.py::t"}
    # Two newer tests an old key could be: it stays apart.
    assert canonical_keys([["a/t.py::x", "b/t.py::x"], ["t.py::x"]])["t.py::x"] == "t.py::x"
    # Two keys of one baseline are two tests, never merged.
    assert canonical_keys([[KEY, "test_perf.py::test_chat[8-16]"]]) == {
        KEY: KEY, "test_perf.py::test_chat[8-16]": "test_perf.py::test_chat[8-16]"}


def test_bisect_pairs_the_sides_by_key() -> None:
    run = {"summary": {"ttft_p50_ms": 1.0}}
    doc = {"tests": [{"nodeid": "tmp/wt-a/" + KEY, "key": KEY, "runs": [run]},
                     {"nodeid": "old.py::t", "runs": [run]}]}
    assert sorted(session_results(doc)) == ["old.py::t", KEY]
