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

Split by tier from tests/test_docker.py: these are its e2e tests; the others are in
tests/unit/deploy/test_docker.py.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DOCKER, ROOT
from helpers import DOCKER_IMAGES as IMAGES
from helpers import docker_assignments as assignments
from helpers import parse_dockerfile as parse


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


def test_the_cpu_image_run_steps_succeed(tmp_path: Path) -> None:
    """The CPU Dockerfile's steps, in order, in a temporary root (see the module docstring for
    what is substituted). Then the image's command resolves: its pytest collects the suite
    with the plugin, and the packaged model is in the image's cache. About 1-3 minutes (pip
    downloads the first time, its caches after)."""
    steps = parse(DOCKER / "Dockerfile.cpu")
    root = tmp_path / "root"
    root.mkdir()

    def mapped(text: str) -> str:  # the image's absolute paths, under the temporary root
        return re.sub(r"(?<![\w./$-])/(workspace|opt|results)\b", str(root) + r"/\1", text)

    build_args = {"LLMPERF_COMMIT": "0123456789abcdef0123456789abcdef01234567",
                  "LLMPERF_BRANCH": "main"}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LLMPERF_", "PIP_", "VIRTUAL_ENV", "PYTEST_"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(str(ROOT)))
    cwd = root
    log: list[str] = []

    def expand(value: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)

    for step in steps:
        if step.keyword in ("FROM", "LABEL", "CMD", "ENTRYPOINT", "USER"):
            continue
        if step.keyword == "ARG":
            for key, default in assignments(step.args).items():
                env[key] = build_args.get(key, default)
        elif step.keyword == "ENV":
            for key, value in assignments(step.args).items():
                env[key] = expand(mapped(value))
        elif step.keyword == "WORKDIR":
            cwd = Path(mapped(step.args))
            cwd.mkdir(parents=True, exist_ok=True)
        elif step.keyword == "COPY":
            words = [w for w in shlex.split(step.args) if not w.startswith("--")]
            *sources, dest = words
            target = Path(mapped(dest)) if dest.startswith("/") else cwd / dest
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, target, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    dest_file = target / src.name if dest.endswith("/") else target
                    dest_file.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest_file)
        elif step.keyword == "RUN":
            run_env = {k: v for k, v in env.items() if k != "PIP_NO_CACHE_DIR"}
            for part in re.split(r"\s*&&\s*", step.args):
                words = shlex.split(part)
                head = words[0].lstrip("(")
                if head == "apt-get" and "install" in words:
                    packages = [w for w in words[words.index("install") + 1:]
                                if not w.startswith("-")]
                    assert packages
                    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}\n", *packages],
                                          capture_output=True, text=True)
                    assert proc.returncode == 0 and "not-installed" not in proc.stdout, (
                        f"Dockerfile.cpu:{step.line}: {packages} not all installed here")
                    log.append(f"checked installed: {packages}")
                    continue
                if head in ("apt-get", "useradd", "chown", "getent") or (
                        words[:2] == ["rm", "-rf"] and "/var/lib/apt" in part):
                    log.append(f"substituted: {part[:40]}")
                    continue
                proc = subprocess.run(["bash", "-euo", "pipefail", "-c", mapped(part)],
                                      cwd=cwd, env=run_env, capture_output=True, text=True,
                                      timeout=900)
                assert proc.returncode == 0, (
                    f"Dockerfile.cpu:{step.line}: {part[:80]} exited {proc.returncode}\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
                log.append(f"ran: {part[:60]}")
        else:
            pytest.fail(f"Dockerfile.cpu:{step.line}: no stand-in for {step.keyword}")

    workspace = root / "workspace"
    assert (workspace / ".venv" / "bin" / "pytest").exists()
    assert env["PATH"].startswith(str(workspace / ".venv" / "bin"))
    assert env["LLMPERF_COMMIT"] == build_args["LLMPERF_COMMIT"]
    # The model was assembled into the image's cache, not the user's.
    models = list((root / "opt" / "llmperf-cache" / "models").glob("*.gguf"))
    assert len(models) == 1 and models[0].stat().st_size > 100_000_000, models
    # The image's command: its `pytest` (first on PATH) with the plugin collects the suite.
    cmd = [s.args for s in steps if s.keyword == "CMD"][-1]
    import json

    argv = json.loads(cmd)
    assert argv[:2] == ["pytest", "--llmperf"]
    found = shutil.which(argv[0], path=env["PATH"])
    assert found == str(workspace / ".venv" / "bin" / "pytest")
    proc = subprocess.run([found, *argv[1:], "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "5 tests collected" in proc.stdout, proc.stdout[-1000:]
    # The packaged model resolves from the image's cache without assembling it again.
    check = subprocess.run(
        [str(workspace / ".venv" / "bin" / "python"), "-c",
         "from pytest_llmperf.models.packaged import packaged_model_path as p; print(p())"],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == str(models[0])
    assert any(entry.startswith("checked installed") for entry in log)
