"""The images in docker/: hadolint-clean, built the way the Kubernetes manifests expect
(non-root uid 1000, the commit carried for provenance, pinned bases), and the CPU image's RUN
steps executed in order.

No container runtime exists on this machine (``docker`` is only the client, with no daemon), so
nothing here builds an image. ``test_the_cpu_image_run_steps_succeed`` does what the build would
do, step by step, in a temporary directory: ARG and ENV set the environment, WORKDIR and COPY
act on a temporary root (``/workspace`` -> ``<tmp>/workspace``, every absolute path of the
Dockerfile mapped the same way), and each RUN step runs with bash there. Substituted, and
checked instead:

- ``apt-get``: not run (it would change this machine); each package it installs must already be
  installed here (``dpkg-query``). ``rm -rf /var/lib/apt/lists/*`` is skipped with it.
- ``useradd`` / ``chown`` / ``getent``: no user is added to this machine; the steps run as the
  current user, who owns the temporary root.
- ``PIP_NO_CACHE_DIR``: the image builds without pip's cache; here it is left out so that pip's
  wheel and HTTP caches make the step quick (the llama-cpp-python wheel is a 5-15 minute source
  build without them).

The vLLM image's base is a CUDA image of many gigabytes: it is linted and checked statically.

Split by tier from tests/test_docker.py: these are its unit tests; the others are in
tests/e2e/test_docker_e2e.py.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT

DOCKER = ROOT / "docker"
IMAGES = ("Dockerfile.cpu", "Dockerfile.vllm")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


def parse(path: Path) -> list[Instruction]:
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


def assignments(args: str) -> dict[str, str]:
    """``K=V K2="V 2"`` (ENV, ARG, LABEL) as a mapping; an ARG without a default is ''."""
    out = {}
    for word in shlex.split(args):
        key, _, value = word.partition("=")
        out[key] = value
    return out


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
        assert base.args == "python:3.11-slim"
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
        if step.keyword == "COPY":
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
        assert "scripts/setup.sh" in runs
