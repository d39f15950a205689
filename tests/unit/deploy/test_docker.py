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
from helpers import DOCKER, ROOT
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
