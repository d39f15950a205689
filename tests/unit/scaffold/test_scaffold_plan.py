"""``llmperf init``'s plan (pytest_llmperf/scaffold/plan.py): which files, where, with what,
for each flag combination; the pytest configuration file it must not shadow; the
never-overwrite split; bad flags as one-line errors. The end-to-end run in an empty git
repository is tests/e2e/test_init_e2e.py."""

from __future__ import annotations

import ast
import configparser
from typing import Any

import pytest
import yaml

from pytest_llmperf.scaffold.action_ref import ACTION_REF
from pytest_llmperf.scaffold.plan import (
    DEFAULT_VLLM_MODEL,
    InitError,
    InitOptions,
    Plan,
    check,
    config_text,
    k8s_refs,
    plan,
    pytest_config_file,
    split,
)


def files(p: Plan) -> dict[str, str]:
    return {f.path: f.content for f in p.files}


def ini(text: str) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read_string(text)
    return dict(parser["pytest"])


def workflow(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    data["on"] = data.pop(True)  # YAML 1.1 reads a bare `on` key as true
    return data


def test_default_plan_is_embedded_with_github() -> None:
    out = files(plan(InitOptions()))
    assert list(out) == ["tests/perf/test_llmperf.py", "pytest.ini", ".gitignore",
                         ".github/workflows/llmperf.yml"]
    test = out["tests/perf/test_llmperf.py"]
    ast.parse(test)  # valid Python
    assert "@llmperf(ttft_p95_ms=10000, min_tps=1, max_errors=0)" in test
    assert "Workload(input_tokens=32, output_tokens=16, requests=4)" in test
    assert ini(out["pytest.ini"]) == {"llmperf_engine": "llama_cpp",
                                      "llmperf_model": "gemma3-270m-q4_k_m"}
    # The report keys are offered commented out: set, a plain `pytest` would write them too.
    assert "# llmperf_html = llmperf-results/report.html\n" in out["pytest.ini"]
    assert out[".gitignore"].splitlines()[-2:] == ["llmperf-results/", "baselines/"]


def test_the_workflow_uses_the_action_with_the_suite() -> None:
    doc = workflow(files(plan(InitOptions(suite="./perf/llm/")))[".github/workflows/llmperf.yml"])
    assert set(doc["on"]) == {"pull_request", "push"}
    assert doc["permissions"] == {"contents": "read"}
    jobs = doc["jobs"]
    assert set(jobs) == {"pr-compare", "save-baseline"}
    assert jobs["save-baseline"]["permissions"] == {"contents": "write"}
    assert jobs["pr-compare"]["permissions"] == {"contents": "read"}
    for job in jobs.values():
        assert job["runs-on"] == "ubuntu-latest"
        action = [s for s in job["steps"] if s["uses"] == ACTION_REF]
        assert len(action) == 1
        assert action[0]["with"] == {"suite": "perf/llm"}  # normalised
        assert job["steps"][0]["with"]["fetch-depth"] == 0


def test_vllm_plan() -> None:
    out = files(plan(InitOptions(engine="vllm", k8s=True)))
    assert "tests/perf/conftest.py" in out
    ast.parse(out["tests/perf/conftest.py"])
    assert ini(out["pytest.ini"])["llmperf_engine"] == "vllm"
    assert ini(out["pytest.ini"])["llmperf_model"] == DEFAULT_VLLM_MODEL
    doc = workflow(out[".github/workflows/llmperf.yml"])
    job = doc["jobs"]["pr-compare"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    # A fork's pull request never reaches the self-hosted runner.
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]
    assert "'llmperf-gpu'" in job["if"]
    assert "labeled" in doc["on"]["pull_request"]["types"]
    assert job["steps"][1]["with"] == {"suite": "tests/perf", "extras": "vllm"}
    k8s = yaml.safe_load(out["k8s/llmperf/kustomization.yaml"])
    literals = k8s["configMapGenerator"][0]["literals"]
    assert "LLMPERF_GPU_MEMORY_UTILIZATION=0.85" in literals
    # The engine and model are the pytest configuration's: a variable would not override it.
    assert not [x for x in literals if x.startswith(("LLMPERF_ENGINE", "LLMPERF_MODEL"))]
    assert "nvidia.com/gpu" in k8s["patches"][0]["patch"]


def test_url_plan_with_gitlab_and_k8s() -> None:
    out = files(plan(InitOptions(engine="url", url="http://10.0.0.5:8000", model="m1",
                                 ci="gitlab", k8s=True, suite="bench")))
    assert list(out) == ["bench/test_llmperf.py", "pytest.ini", ".gitignore", ".gitlab-ci.yml",
                         "k8s/llmperf/kustomization.yaml"]
    keys = ini(out["pytest.ini"])
    assert keys["llmperf_url"] == "http://10.0.0.5:8000"
    assert keys["llmperf_server_model"] == "m1"
    ast.parse(out["bench/test_llmperf.py"])
    gitlab = yaml.safe_load(out[".gitlab-ci.yml"])
    assert gitlab["variables"]["PERF_SUITE"] == "bench"
    assert {"llmperf:merge-request", "llmperf:default-branch"} <= set(gitlab)
    assert "llmperf compare" in gitlab["llmperf:merge-request"]["script"][-1]
    assert "--llmperf-save" in gitlab["llmperf:default-branch"]["script"][-1]
    k8s = yaml.safe_load(out["k8s/llmperf/kustomization.yaml"])
    base, component, _ = k8s_refs()
    assert k8s["resources"] == [base] and k8s["components"] == [component]
    literals = k8s["configMapGenerator"][0]["literals"]
    assert literals == ["LLMPERF_SHARDS=2", "LLMPERF_SUITE=bench"]


def test_ci_none_writes_no_workflow_and_keeps_baselines_tracked() -> None:
    out = files(plan(InitOptions(ci="none")))
    assert list(out) == ["tests/perf/test_llmperf.py", "pytest.ini", ".gitignore"]
    assert "baselines/" not in out[".gitignore"].splitlines()


def test_k8s_refs_follow_the_action_ref() -> None:
    assert k8s_refs("o/r@v2") == ("https://github.com/o/r//k8s/base?ref=v2",
                                  "https://github.com/o/r//k8s/components/run?ref=v2", "o/r@v2")


@pytest.mark.parametrize(("present", "expected"), [
    ({}, None),
    ({"pyproject.toml": "[project]\nname = 'x'\n"}, None),  # no pytest table: pytest.ini is safe
    ({"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-q'\n"}, "pyproject.toml"),
    ({"setup.cfg": "[metadata]\n"}, None),
    ({"setup.cfg": "[tool:pytest]\n", "tox.ini": "[pytest]\n"}, "tox.ini"),  # pytest's order
    ({"pytest.ini": "", "pyproject.toml": "[tool.pytest.ini_options]\n"}, "pytest.ini"),
    ({"../pyproject.toml": "[tool.pytest.ini_options]\n"}, "../pyproject.toml"),  # above
    ({"../../tox.ini": "[pytest]\n", "../setup.cfg": "[tool:pytest]\n"}, "../setup.cfg"),
    ({"../pytest.ini": "", "tox.ini": "[pytest]\n"}, "tox.ini"),  # the nearest folder first
])
def test_the_pytest_configuration_file(present: dict[str, str], expected: str | None) -> None:
    assert pytest_config_file(present) == expected


def test_an_existing_pyproject_configuration_is_not_shadowed() -> None:
    """A new pytest.ini would make pytest ignore [tool.pytest.ini_options]: the plan names
    pyproject.toml instead (it exists, so it is never written) with TOML lines to add."""
    out = files(plan(InitOptions(), {"pyproject.toml": "[tool.pytest.ini_options]\n"}))
    assert "pytest.ini" not in out
    text = out["pyproject.toml"]
    assert text.startswith("[tool.pytest.ini_options]\n")
    assert 'llmperf_model = "gemma3-270m-q4_k_m"' in text
    assert config_text(InitOptions(), "setup.cfg").startswith("[tool:pytest]\n")


def test_split_never_overwrites() -> None:
    p = plan(InitOptions(k8s=True))
    there = {".gitignore", "tests/perf/test_llmperf.py"}
    new, existing = split(p.files, lambda path: path in there)
    assert {f.path for f in existing} == there
    assert {f.path for f in new} == {f.path for f in p.files} - there
    new, existing = split(p.files, lambda path: True)
    assert new == [] and len(existing) == len(p.files)


def test_next_steps() -> None:
    steps = plan(InitOptions(suite="perf")).next_steps
    assert steps[1].startswith("pytest --llmperf perf --llmperf-html llmperf-results/")
    assert "git add perf/test_llmperf.py pytest.ini .gitignore .github/workflows/llmperf.yml" \
        in steps[2]
    assert steps[3].startswith("pytest --llmperf --llmperf-save perf ")


@pytest.mark.parametrize(("options", "message"), [
    (InitOptions(engine="url"), "--engine url needs --url"),
    (InitOptions(engine="url", url="ftp://x"), "--url 'ftp://x'"),
    (InitOptions(engine="url", url="http://a b"), "--url 'http://a b'"),
    (InitOptions(url="http://x"), "--url is for --engine url"),
    (InitOptions(model="m"), "--model is for --engine vllm or url"),
    (InitOptions(engine="vllm", model="a b"), "--model 'a b'"),
    (InitOptions(suite="../outside"), "--suite '../outside'"),
    (InitOptions(suite="/abs"), "--suite '/abs'"),
    (InitOptions(suite="."), "--suite '.'"),
    (InitOptions(suite="tests/perf x"), "--suite 'tests/perf x'"),
    (InitOptions(engine="tgi"), "--engine 'tgi'"),
    (InitOptions(ci="jenkins"), "--ci 'jenkins'"),
    (InitOptions(branch="-x"), "--branch '-x'"),
])
def test_bad_flags(options: InitOptions, message: str) -> None:
    with pytest.raises(InitError) as info:
        check(options)
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_a_configuration_above_the_target_is_named_not_shadowed() -> None:
    out = files(plan(InitOptions(), {"../pyproject.toml": "[tool.pytest.ini_options]\n"}))
    assert "pytest.ini" not in out
    assert out["../pyproject.toml"].startswith("[tool.pytest.ini_options]\n")


@pytest.mark.parametrize("engine", ["embedded", "vllm"])
def test_the_gitlab_commands_exist(engine: str) -> None:
    """Every ``llmperf`` command of the written .gitlab-ci.yml parses with the real parser,
    and every --llmperf-* option of its pytest line is one the plugin registers."""
    import shlex

    from pytest_llmperf.cli.main import build_parser
    from pytest_llmperf.settings import OPTIONS

    doc = yaml.safe_load(files(plan(InitOptions(engine=engine, ci="gitlab")))[".gitlab-ci.yml"])
    lines = [line for job in doc.values() if isinstance(job, dict)
             for line in job.get("script", [])]
    llmperf = [shlex.split(line) for line in lines if line.startswith(".venv/bin/llmperf ")]
    pytest_lines = [shlex.split(line) for line in lines if line.startswith(".venv/bin/pytest ")]
    assert len(llmperf) == 1 and len(pytest_lines) == 1
    argv = llmperf[0][1:]
    args = build_parser().parse_args(argv[:argv.index("--")])
    assert args.command == "compare" and args.json == "llmperf.json"
    flags = {o.flag for o in OPTIONS}
    used = {a.partition("=")[0] for a in pytest_lines[0] if a.startswith("--llmperf-")}
    assert used and used <= flags, used - flags
    assert f"pytest-llmperf[{'vllm' if engine == 'vllm' else 'llama'}]" in "\n".join(
        doc[".llmperf"]["before_script"])


@pytest.mark.parametrize("engine", ["embedded", "vllm", "url"])
def test_the_workflow_gives_the_action_only_its_inputs(engine: str) -> None:
    """Every ``with:`` key of the written workflow's Action steps is an input of action.yml
    (this repository's; skipped in a checkout without it)."""
    from helpers import ROOT

    action = ROOT / "action.yml"
    if not action.is_file():
        pytest.skip("no action.yml in this checkout")
    inputs = set(yaml.safe_load(action.read_text())["inputs"])
    url = "http://127.0.0.1:8000" if engine == "url" else None
    doc = workflow(files(plan(InitOptions(engine=engine, url=url)))[
        ".github/workflows/llmperf.yml"])
    given = {key for job in doc["jobs"].values() for step in job["steps"]
             if step["uses"] == ACTION_REF for key in step["with"]}
    assert "suite" in given
    assert given <= inputs, given - inputs
