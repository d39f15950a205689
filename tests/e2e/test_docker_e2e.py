"""The images in docker/: hadolint-clean, and the CPU image's podman check refusing to skip.

The CPU image is built and run for real by ``scripts/container_check.sh``, a stage of .ci/run
(podman from Debian, the base image made with mmdebstrap): the multi-stage build, the suite in
the image as uid 1000 and as uid 1234, the Kubernetes pod scripts for two indexes and the
merge. That replaces the step-by-step simulation of the RUN steps on the host this file had
before the image became multi-stage (a wheel stage with a compiler, then an image without
one): the real build proves more than the simulation did. Here: the script fails loudly
where podman cannot be had.

The vLLM image's base is a CUDA image of many gigabytes: it is linted and checked statically.

Split by tier from tests/test_docker.py: these are its e2e tests; the others are in
tests/unit/deploy/test_docker.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DOCKER, ROOT
from helpers import DOCKER_IMAGES as IMAGES


def hadolint() -> str | None:
    here = Path(sys.executable).with_name("hadolint")
    return str(here) if here.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("name", IMAGES)
def test_hadolint_is_clean(name: str) -> None:
    tool = hadolint()
    if tool is None:
        pytest.skip("hadolint is not installed (bash scripts/install_lint_tools.sh)")
    proc = subprocess.run([tool, "--no-color", str(DOCKER / name)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_finds_what_it_should(tmp_path: Path) -> None:
    """The linter really checks: a root image with an unpinned base and apt cache is refused."""
    tool = hadolint()
    if tool is None:
        pytest.skip("hadolint is not installed (bash scripts/install_lint_tools.sh)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y git\n")
    proc = subprocess.run([tool, "--no-color", str(bad)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "DL3007" in proc.stdout  # latest
    assert "DL3009" in proc.stdout  # apt lists left in the image


def test_the_container_check_fails_loudly_where_podman_cannot_be_installed(
        tmp_path: Path) -> None:
    """scripts/container_check.sh never skips: with no podman and no apt-get to install it,
    it exits non-zero with one error line saying so, and runs no later step."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sh", "env", "git", "mktemp", "rm", "cat", "date", "awk", "tail", "id",
                 "dirname", "mkdir", "cp", "sed", "grep", "sleep"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPERF_")}
    env["PATH"] = str(bin_dir)
    proc = subprocess.run([str(bin_dir / "bash"), str(ROOT / "scripts" / "container_check.sh")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("container_check: error:")]
    assert errors == ["container_check: error: step 'podman and tools' failed (exit 1): no "
                      "apt-get on this machine: podman cannot be installed here"], proc.stderr
    assert "missing: podman buildah mmdebstrap" in proc.stderr
    assert "container_check:" not in proc.stdout  # no step finished, none was skipped
