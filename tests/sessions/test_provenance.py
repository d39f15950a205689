"""Results files carry their origin (commit, branch, profile, shard, run id, host, start), and
``llmperf report --json`` merges only the shards of one run: real sessions against the oracle
server write the shard files, the CLI's main function merges them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import no_internal_traceback, results_doc

from pytest_llmperf.cli import main as cli_main
from pytest_llmperf.report.provenance import CI_RUN_IDS

pytest.importorskip("git", reason="needs gitpython")

N_TESTS = 9
SUITE = f"""
import pytest
from pytest_llmperf import Workload, llmperf

@pytest.mark.parametrize("n", range({N_TESTS}))
@llmperf(min_tps=0.1)
def test_gen(llmperf_bench, llm_engine, n):
    llmperf_bench(llm_engine, Workload(input_tokens=4, output_tokens=2, requests=1))
"""
NODEIDS = [f"test_suite.py::test_gen[{n}]" for n in range(N_TESTS)]

Shard = Callable[..., Path]


@pytest.fixture
def shard(pytester: pytest.Pytester, llmperf_oracle: Any,
          monkeypatch: pytest.MonkeyPatch) -> Shard:
    """``shard("0/3", run_id="r1", commit="c1", out="s0.json")``: one real session of the
    suite's shard against the oracle, its results file's path returned."""
    server = llmperf_oracle(ttft_ms=1, itl_ms=1)
    pytester.makepyfile(test_suite=SUITE)

    def run(spec: str | None, run_id: str | None = "run-1", commit: str | None = "c0ffee1",
            out: str | None = None, extra: tuple[str, ...] = (),
            ci: dict[str, str] | None = None) -> Path:
        for _, name, attempt in CI_RUN_IDS:  # the CI system this suite may itself run on
            for var in (name, attempt):
                if var:
                    monkeypatch.delenv(var, raising=False)
        for name, value in (("LLMPERF_RUN_ID", run_id), ("LLMPERF_COMMIT", commit),
                            *(ci or {}).items()):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        path = pytester.path / (out or f"shard{(spec or 'all').replace('/', 'of')}.json")
        args = ["--llmperf", f"--llmperf-url={server.url}", f"--llmperf-json={path}",
                "-p", "no:cacheprovider", *extra]
        if spec:
            args.append(f"--llmperf-shard={spec}")
        res = pytester.runpytest(*args)
        assert res.ret == 0, res.stdout.str()
        return path

    return run


def report(tmp: Path, files: list[Path], capsys: pytest.CaptureFixture[str],
           *extra: str) -> tuple[int, str, str]:
    md = tmp / "merged.md"
    md.unlink(missing_ok=True)
    code = cli_main(["report", "--markdown", str(md), "--json", *map(str, files), *extra])
    out, err = capsys.readouterr()
    no_internal_traceback(out + err)
    return code, md.read_text() if md.exists() else "", err


def nodeids_of(*files: Path) -> set[str]:
    return {t["nodeid"] for f in files for t in json.loads(f.read_text())["tests"]}


def test_every_results_file_records_its_origin(shard: Shard,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMPERF_BRANCH", "release-2")
    data = json.loads(shard("1/3", run_id="nightly-42", commit="abc1234").read_text())
    assert data["schema_version"] == 2
    prov = data["provenance"]
    assert set(prov) == {"commit", "branch", "dirty", "profiles", "shard", "run_id", "host",
                         "started_at"}
    assert prov["commit"] == "abc1234" and prov["branch"] == "release-2"
    assert prov["dirty"] is None  # no git here: unknown, not "clean"
    assert prov["shard"] == "1/3" and prov["run_id"] == "nightly-42"
    assert len(prov["profiles"]) == 1 and prov["profiles"][0].startswith("openai-oracle-")
    assert prov["host"] and prov["started_at"] <= data["created"]
    assert prov["started_at"].endswith("+00:00")
    assert data["tests"] and {t["nodeid"] for t in data["tests"]} < set(NODEIDS)
    # Without the variables: a run id is generated (one per session), no commit, no shard.
    prov = json.loads(shard(None, run_id=None, commit=None).read_text())["provenance"]
    assert prov["shard"] is None and prov["commit"] is None and len(prov["run_id"]) == 16


def test_commit_branch_and_dirty_come_from_git(shard: Shard, pytester: pytest.Pytester) -> None:
    import git

    repo = git.Repo.init(pytester.path, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "t").set_value("user", "email", "t@example.com")
    repo.index.add(["test_suite.py"])
    head = repo.index.commit("suite").hexsha
    prov = json.loads(shard("0/2", commit=None).read_text())["provenance"]
    assert (prov["commit"], prov["branch"], prov["dirty"]) == (head, "main", False)
    (pytester.path / "test_suite.py").write_text(SUITE + "\n# changed\n")
    prov = json.loads(shard("0/2", commit=None).read_text())["provenance"]
    assert (prov["commit"], prov["dirty"]) == (head, True)
    # LLMPERF_COMMIT wins (an image whose .git is not the commit it was built from).
    prov = json.loads(shard("0/2", commit="f" * 40).read_text())["provenance"]
    assert (prov["commit"], prov["dirty"]) == ("f" * 40, None)


def test_the_shards_of_one_run_merge_into_every_test(
    shard: Shard, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str],
) -> None:
    files = [shard(f"{i}/3") for i in range(3)]
    code, md, err = report(pytester.path, files, capsys)
    assert code == 0, err
    assert "warning" not in err
    for nodeid in NODEIDS:
        assert f"`{nodeid.split('::')[1]}`" in md
    counts = [len(json.loads(f.read_text())["tests"]) for f in files]
    assert sum(counts) == N_TESTS and all(counts) and nodeids_of(*files) == set(NODEIDS)


def test_merges_that_do_not_belong_together_are_refused(
    shard: Shard, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str],
) -> None:
    s0, s1, s2 = (shard(f"{i}/3") for i in range(3))

    def refused(files: list[Path], *expected: str) -> None:
        code, md, err = report(pytester.path, files, capsys)
        assert code == 2
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("llmperf report: error: ")
        for text in expected:
            assert text in err, err
        assert md == ""

    # The same shard twice (copied under another name): 0/3 given twice.
    dup = pytester.path / "again.json"
    shutil.copy(s0, dup)
    refused([s0, s1, s2, dup], f"shard 0/3 given twice: {s0}, {dup}")
    # Another commit's shard.
    other_commit = shard("1/3", commit="deadbee", out="c2.json")
    refused([s0, other_commit, s2], "results of different commits:", f"{s0}, {s2} (c0ffee1)",
            f"{other_commit} (deadbee)")
    # Another run's shard (same commit): a stale file from an earlier run on the volume.
    stale = shard("1/3", run_id="run-0", out="stale.json")
    refused([s0, stale, s2], "results of different runs:", f"{stale} (run-0)",
            "same LLMPERF_RUN_ID")
    # Shards run without LLMPERF_RUN_ID get a run id each: refused, with the hint.
    a = shard("0/2", run_id=None, out="a.json")
    b = shard("1/2", run_id=None, out="b.json")
    refused([a, b], "results of different runs:", "LLMPERF_RUN_ID")
    # ... unless a CI system names the run: the shards of a GitHub Actions matrix merge as they
    # are (issue 26, item 5), a re-run's attempt apart.
    gh = {"GITHUB_RUN_ID": "9876543210", "GITHUB_RUN_ATTEMPT": "2"}
    a = shard("0/2", run_id=None, out="gh-a.json", ci=gh)
    b = shard("1/2", run_id=None, out="gh-b.json", ci=gh)
    merged = pytester.path / "gh-merged.json"
    code, _, err = report(pytester.path, [a, b], capsys, "--merged", str(merged))
    assert code == 0, err
    assert json.loads(merged.read_text())["provenance"]["run_id"] == "gh-9876543210-2"
    retry = shard("1/2", run_id=None, out="gh-retry.json", ci={**gh, "GITHUB_RUN_ATTEMPT": "3"})
    refused([a, retry], "results of different runs:", "(gh-9876543210-3)")
    # Another profile: the same engine and model streaming another endpoint.
    chat = shard("1/3", out="chat.json", extra=("--llmperf-endpoint=chat",))
    refused([s0, chat, s2], "results of different profiles:", str(chat), "openai-oracle-")
    # A shard of a 2-way split among 3-way shards, and a whole-suite file among shards.
    half = shard("0/2", out="half.json")
    refused([s1, s2, half], "shard counts disagree:", f"{s1}, {s2} (of 3); {half} (of 2)")
    whole = shard(None, out="whole.json")
    refused([s0, s1, whole], "shard counts disagree:", f"{whole} (not a shard)")


def test_a_missing_shard_is_named_and_allow_partial_merges_the_rest(
    shard: Shard, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str],
) -> None:
    s0, s2 = shard("0/3"), shard("2/3")
    code, md, err = report(pytester.path, [s0, s2], capsys)
    assert code == 2 and md == ""
    assert "missing shard(s) 1/3" in err and "hold 2 of 3 shards" in err
    assert "--allow-partial" in err and len(err.strip().splitlines()) == 1
    code, md, err = report(pytester.path, [s0, s2], capsys, "--allow-partial")
    assert code == 0
    assert err.strip() == (f"llmperf report: warning: partial merge: missing shard(s) 1/3: "
                           f"the files given ({s0}, {s2}) hold 2 of 3 shards")
    shown = {n for n in NODEIDS if f"`{n.split('::')[1]}`" in md}
    assert shown == nodeids_of(s0, s2) and len(shown) < N_TESTS


def test_values_are_checked_against_the_schema(
    shard: Shard, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str],
) -> None:
    s0, s1 = shard("0/2"), shard("1/2")
    data = json.loads(s1.read_text())
    data["tests"][0]["runs"][0]["summary"]["ttft_p50_ms"] = "fast"
    s1.write_text(json.dumps(data))
    code, _, err = report(pytester.path, [s0, s1], capsys)
    assert code == 2
    assert err.strip() == (f"llmperf report: error: {s1}: tests[0].runs[0].summary.ttft_p50_ms="
                           "'fast' is not a number")
    for key, value, expected in (
        ("shard", "3/2", "provenance.shard='3/2' must be 'INDEX/COUNT' with 0 <= INDEX < "
                         "COUNT, COUNT at most 10,000 (shards of one suite; merging their "
                         "results files lists the missing ones)"),
        ("run_id", 7, "provenance.run_id=7 must be a non-empty string"),
        ("dirty", "no", "provenance.dirty='no' must be true, false or null"),
    ):
        data = json.loads(s0.read_text())
        data["provenance"][key] = value
        bad = pytester.path / "bad.json"
        bad.write_text(json.dumps(data))
        code, _, err = report(pytester.path, [bad], capsys)
        assert code == 2 and err.strip() == f"llmperf report: error: {bad}: {expected}"
    data = json.loads(s0.read_text())
    del data["provenance"]
    (pytester.path / "bad.json").write_text(json.dumps(data))
    code, _, err = report(pytester.path, [pytester.path / "bad.json"], capsys)
    assert code == 2 and "provenance must be an object, not NoneType" in err
    data["schema_version"] = 3
    (pytester.path / "bad.json").write_text(json.dumps(data))
    code, _, err = report(pytester.path, [pytester.path / "bad.json"], capsys)
    assert code == 2 and "results schema version 3 is newer than this pytest-llmperf" in err


def test_older_files_without_provenance_merge_with_a_warning(
    shard: Shard, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str],
) -> None:
    old = pytester.path / "old.json"
    old.write_text(json.dumps(results_doc()))  # schema version 1, no provenance
    assert "provenance" not in json.loads(old.read_text())
    s0 = shard("0/1")
    code, md, err = report(pytester.path, [old, s0], capsys)
    assert code == 0
    assert err.strip() == (f"llmperf report: warning: {old}: no provenance (written by an "
                           "older pytest-llmperf): merged without checking commits, profiles "
                           "and shards")
    assert "`test_chat`" in md and "`test_gen[0]`" in md
    code, _, err = report(pytester.path, [old], capsys)  # one old file: no merge, no warning
    assert code == 0 and err == ""
