"""The stored pytest arguments ``llmperf nightly --bisect`` replays (issue 23, class 8): the
baseline store is a trust boundary, so only an allow-list of arguments that select tests or
shape the measurement is replayed; anything that runs a command or names a file, URL or
credential is refused and named. The nightly runs with such a store: tests/e2e/
test_hostile_nightly.py.
"""

from __future__ import annotations

import pytest

from pytest_llmperf.commits import replay
from pytest_llmperf.commits.nightly import Finding

HONEST = ["--llmperf", "tests/perf/test_chat.py::test_chat[8-64]", "-k", "chat and not slow",
          "-m", "llmperf", "-q", "-vv", "-x", "-rA", "--tb", "short", "-p",
          "no:cacheprovider", "-pno:randomly", "-n", "4", "--llmperf-repeats", "3",
          "--llmperf-alpha=0.01", "--llmperf-engine", "openai", "--llmperf-n-batch", "256",
          "--llmperf-model", "gemma3-270m-q4_k_m", "--llmperf-tokenizer", "server",
          "--llmperf-endpoint", "chat", "--llmperf-shard", "1/4", "--llmperf-keep-variants",
          "tests/perf", "."]


def refused(args: list[str]) -> list[str]:
    return [r.argument for r in replay.check(args).refused]


def test_the_arguments_an_honest_recorder_keeps_are_replayed_as_they_are() -> None:
    got = replay.check(HONEST)
    assert got.ok and got.refused == ()
    # Attached short values are spelled out; everything else is kept, in order.
    spelled = list(HONEST)
    spelled[spelled.index("-rA"):spelled.index("-rA") + 1] = ["-r", "A"]
    spelled[spelled.index("-pno:randomly"):spelled.index("-pno:randomly") + 1] = [
        "-p", "no:randomly"]
    spelled[spelled.index("--llmperf-alpha=0.01"):
            spelled.index("--llmperf-alpha=0.01") + 1] = ["--llmperf-alpha", "0.01"]
    assert got.args == tuple(spelled)


def test_where_baselines_live_is_left_out_not_refused() -> None:
    got = replay.check(["--llmperf", "--llmperf-store", "git:llmperf-baselines",
                        "--llmperf-baseline-dir=base", "--llmperf-compare", "main", "tests"])
    assert got.ok
    assert got.args == ("--llmperf", "tests")
    assert got.dropped == ("--llmperf-store", "--llmperf-baseline-dir", "--llmperf-compare")


@pytest.mark.parametrize(("args", "named"), [
    (["--junitxml=/home/u/victim.xml"], "--junitxml"),
    (["--junit-xml", "victim.xml"], "--junit-xml"),
    (["--llmperf-server-cmd", "sh -c 'touch PWNED'"], "--llmperf-server-cmd"),
    (["--llmperf-server-args=--chat-template /etc/passwd"], "--llmperf-server-args"),
    (["--llmperf-server", "vllm"], "--llmperf-server"),
    (["--llmperf-url", "http://attacker.example/v1"], "--llmperf-url"),
    (["--llmperf-headers", "Authorization: Bearer x"], "--llmperf-headers"),
    (["--llmperf-api-key-env", "AWS_SECRET_ACCESS_KEY"], "--llmperf-api-key-env"),
    (["--llmperf-engine-arg", "trust_remote_code=true"], "--llmperf-engine-arg"),
    (["--llmperf-ab", "server_cmd=sh -c id"], "--llmperf-ab"),
    (["--llmperf-tls-verify", "false"], "--llmperf-tls-verify"),
    (["--llmperf-tokenizer", "/tmp/evil.json"], "--llmperf-tokenizer"),
    (["--llmperf-model", "/tmp/evil.gguf"], "--llmperf-model"),
    (["--llmperf-model", "someone/some-model"], "--llmperf-model"),
    (["--llmperf-json", "out.json"], "--llmperf-json"),
    (["--llmperf-html=out.html"], "--llmperf-html"),
    (["--llmperf-markdown", "out.md"], "--llmperf-markdown"),
    (["--llmperf-shard-durations", "/etc/passwd"], "--llmperf-shard-durations"),
    (["--llmperf-save"], "--llmperf-save"),
    (["-c", "/tmp/evil.ini"], "-c"),
    (["-o", "addopts=-p evil"], "-o"),
    (["--override-ini=llmperf_server_cmd=sh -c id"], "--override-ini"),
    (["--rootdir", "/"], "--rootdir"),
    (["--confcutdir=/"], "--confcutdir"),
    (["--basetemp", "/home/u"], "--basetemp"),
    (["-p", "evil_plugin"], "-p"),
    (["-pevil_plugin"], "-p"),
    (["-W", "error::evil.Warning"], "-W"),
    (["--pdbcls=evil:Debugger"], "--pdbcls"),
    (["--llmperf-serv", "x"], "--llmperf-serv"),  # an abbreviation is no allowed name
    (["/etc/passwd"], "/etc/passwd"),
    (["../outside/test_x.py"], "../outside/test_x.py"),
    (["tests/../../outside.py::test"], "tests/../../outside.py::test"),
    (["@args.txt"], "@args.txt"),
    (["-k", "-pevil"], "-k"),  # pytest's pre-parse would read -pevil as -p evil
    (["-m"], "-m"),
    (["--llmperf-repeats", "0"], "--llmperf-repeats"),
    (["--llmperf-shard", "1/999999999999"], "--llmperf-shard"),
    (["--llmperf-keep-variants=yes"], "--llmperf-keep-variants"),
    (["--", "-p", "evil"], "--"),
    (["tests/x.py\n--junitxml=v"], "tests/x.py --junitxml=v"),
])
def test_a_stored_argument_off_the_list_is_refused_and_named(args: list[str],
                                                             named: str) -> None:
    got = replay.check(["--llmperf", "tests/test_perf.py", *args])
    assert not got.ok
    assert named in refused(["--llmperf", "tests/test_perf.py", *args])
    # Nothing refused is ever among what would run.
    assert all(a in ("--llmperf", "tests/test_perf.py") for a in got.args)


def test_a_refused_option_with_a_secret_is_named_without_its_value() -> None:
    got = replay.check(["--llmperf-headers=Authorization: Bearer s3cret", "--llmperf-url",
                        "http://h/?key=s3cret"])
    assert [r.argument for r in got.refused] == ["--llmperf-headers", "--llmperf-url"]
    assert "s3cret" not in " ".join(str(r) for r in got.refused)


def test_the_finding_says_why_it_is_not_bisected() -> None:
    got = replay.check(["--llmperf", "--junitxml=/v.xml", "--llmperf-server-cmd", "sh -c x"])
    f = Finding(profile_id="p", nodeid="t.py::t", metric="tpot_p50_ms", kind="regression",
                last_good="a" * 40, last_good_subject="", first_bad="b" * 40,
                first_bad_subject="", between=0, before=1.0, after=2.0, change_pct=100.0,
                ci_low_pct=90.0, ci_high_pct=110.0, p_value=0.001, index=3, order=3,
                pytest_args=("--llmperf",), args_recorded=True, refused=got.refused)
    assert "--junitxml" in f.replay_note and "--llmperf-server-cmd" in f.replay_note
    assert "--bisect-args" in f.replay_note
    assert f.to_dict()["replay_refused"][0]["argument"] == "--junitxml"
