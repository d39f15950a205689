"""What ``llmperf init`` writes where: the plan of files for a set of flags, pure.

``check`` validates the flags (one-line ``InitError``), ``plan`` renders the templates of
``templates/`` into ``Planned`` files (relative paths), and ``split`` divides a plan into the
files to write and those that already exist (never overwritten: their content is shown as what
would have been added). No file is read or written here except the package's own templates;
``scaffold/write.py`` writes, ``cli/init_cmd.py`` parses the command line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from ..models.packaged import DEFAULT_MODEL
from .action_ref import ACTION_REF

ENGINES = ("embedded", "vllm", "url")
CIS = ("github", "gitlab", "none")
RESULTS_DIR = "llmperf-results"
DEFAULT_VLLM_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
TEMPLATES = Path(__file__).with_name("templates")

#: pytest's configuration files in the order it looks for them, each with the section that
#: makes it the configuration (None: the file counts whatever it holds).
PYTEST_CONFIGS: tuple[tuple[str, str | None], ...] = (
    ("pytest.ini", None), (".pytest.ini", None), ("pyproject.toml", "[tool.pytest.ini_options]"),
    ("tox.ini", "[pytest]"), ("setup.cfg", "[tool:pytest]"))

_SAFE_PATH = re.compile(r"[A-Za-z0-9._/-]+")
_SAFE_MODEL = re.compile(r"[A-Za-z0-9._/:@+-]+")
_SAFE_BRANCH = re.compile(r"[A-Za-z0-9._/-]+")
_URL = re.compile(r"https?://[A-Za-z0-9.\-_~:/?#\[\]@!$&()*+,;=%]+")


class InitError(ValueError):
    """Flags that cannot make a setup: one line, exit status 2."""


@dataclass(frozen=True)
class InitOptions:
    engine: str = "embedded"
    url: str | None = None
    model: str | None = None
    ci: str = "github"
    k8s: bool = False
    suite: str = "tests/perf"
    branch: str = "main"


@dataclass(frozen=True)
class Planned:
    """One file of the plan: ``path`` relative to the target directory, posix separators."""

    path: str
    content: str
    what: str  # a few words: what the file is for


@dataclass(frozen=True)
class Plan:
    files: tuple[Planned, ...]
    next_steps: tuple[str, ...]


def check(options: InitOptions) -> InitOptions:
    """``options`` checked and normalised (the suite as a clean relative posix path, vLLM's
    default model filled in); raises InitError naming the bad flag."""
    if options.engine not in ENGINES:
        raise InitError(f"--engine {options.engine!r}: one of {', '.join(ENGINES)}")
    if options.ci not in CIS:
        raise InitError(f"--ci {options.ci!r}: one of {', '.join(CIS)}")
    if options.engine == "url":
        if not options.url:
            raise InitError("--engine url needs --url URL (the server's base URL, "
                            "e.g. http://127.0.0.1:8000)")
        if not _URL.fullmatch(options.url):
            raise InitError(f"--url {options.url!r}: an http:// or https:// URL without "
                            "spaces or quotes")
    elif options.url:
        raise InitError(f"--url is for --engine url (not --engine {options.engine})")
    if options.model is not None:
        if options.engine == "embedded":
            raise InitError("--model is for --engine vllm or url (the embedded engine runs "
                            "the packaged Gemma 3 270M)")
        if not _SAFE_MODEL.fullmatch(options.model):
            raise InitError(f"--model {options.model!r}: letters, digits and ._/:@+- only")
    if not _SAFE_BRANCH.fullmatch(options.branch) or options.branch.startswith("-"):
        raise InitError(f"--branch {options.branch!r}: letters, digits and ._/- only")
    suite = options.suite.replace("\\", "/").strip()
    parts = [p for p in PurePosixPath(suite).parts if p != "."]
    if (not parts or suite.startswith("/") or ".." in parts or not _SAFE_PATH.fullmatch(suite)
            or parts[0].startswith("-")):
        raise InitError(f"--suite {options.suite!r}: a relative folder inside --dir "
                        "(letters, digits and ._/- only, no '..'), e.g. tests/perf")
    model = options.model
    if options.engine == "vllm" and not model:
        model = DEFAULT_VLLM_MODEL
    return replace(options, suite="/".join(parts), model=model)


def pytest_config_file(existing: Mapping[str, str]) -> str | None:
    """The file pytest would read its configuration from, given the texts of the candidate
    files present (``existing``: path relative to the target directory -> text; ancestors'
    as ``../NAME``, ``../../NAME``): the nearest directory first, in pytest's order within one.
    None: there is none, so a new pytest.ini is safe (it would shadow any of them)."""
    prefixes = sorted({path.rpartition("/")[0] for path in existing},
                      key=lambda prefix: prefix.count(".."))
    for prefix in prefixes:
        for name, section in PYTEST_CONFIGS:
            path = f"{prefix}/{name}" if prefix else name
            if path not in existing:
                continue
            if section is None or any(line.strip() == section
                                      for line in existing[path].splitlines()):
                return path
    return None


def ini_keys(options: InitOptions) -> list[tuple[str, str]]:
    """The pytest configuration keys ``llmperf init`` sets: the engine's (each is also a
    --llmperf-* option, which wins, and an LLMPERF_* variable, which a key overrides)."""
    if options.engine == "vllm":
        return [("llmperf_engine", "vllm"), ("llmperf_model", str(options.model))]
    if options.engine == "url":
        keys = [("llmperf_url", str(options.url))]
        if options.model:
            keys.append(("llmperf_server_model", options.model))
        return keys
    return [("llmperf_engine", "llama_cpp"), ("llmperf_model", DEFAULT_MODEL)]


#: Report keys offered commented out: set, they make every pytest run write the reports, a
#: plain ``pytest`` (marked tests skipped) too.
REPORT_KEYS = (("llmperf_json", f"{RESULTS_DIR}/results.json"),
               ("llmperf_html", f"{RESULTS_DIR}/report.html"))

_INI_COMMENT = ("# pytest-llmperf (llmperf init): `pytest --llmperf` runs the tests marked "
                "@llmperf;\n# without --llmperf they are skipped. Each key is also a "
                "--llmperf-* option, which wins,\n# and an LLMPERF_* environment variable, "
                "which the key overrides.\n")
_REPORTS_COMMENT = ("# The reports of every run (a plain `pytest` run's too), or give "
                    "--llmperf-html PATH:\n")


def config_text(options: InitOptions, config_file: str | None) -> str:
    """The configuration lines: a whole pytest.ini when ``config_file`` is None, else the lines
    to add to that file's pytest section (TOML strings for pyproject.toml)."""
    keys = ini_keys(options)
    name = (config_file or "").rpartition("/")[2]
    if name == "pyproject.toml":
        body = "".join(f'{k} = "{v}"\n' for k, v in keys)
        reports = "".join(f'# {k} = "{v}"\n' for k, v in REPORT_KEYS)
        return f"[tool.pytest.ini_options]\n{_INI_COMMENT}{body}{_REPORTS_COMMENT}{reports}"
    section = {"setup.cfg": "[tool:pytest]"}.get(name, "[pytest]")
    body = "".join(f"{k} = {v}\n" for k, v in keys)
    reports = "".join(f"# {k} = {v}\n" for k, v in REPORT_KEYS)
    return f"{section}\n{_INI_COMMENT}{body}{_REPORTS_COMMENT}{reports}"


def _render(name: str, **context: Any) -> str:
    import jinja2  # only for llmperf init

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    return env.get_template(name).render(**context)


def k8s_refs(action_ref: str = ACTION_REF) -> tuple[str, str, str]:
    """(base, run component, ref) of pytest-llmperf's Kubernetes manifests as kustomize
    remote targets, at the Action's release (``owner/name@ref``)."""
    repo, _, ref = action_ref.partition("@")
    root = f"https://github.com/{repo}"
    return (f"{root}//k8s/base?ref={ref}", f"{root}//k8s/components/run?ref={ref}",
            f"{repo}@{ref}")


def plan(options: InitOptions, config_files: Mapping[str, str] | None = None) -> Plan:
    """The files for ``options`` (checked first: InitError), relative to the target directory.

    ``config_files``: the texts of pytest's candidate configuration files present there
    (``pytest_config_file``); when one is pytest's configuration, the plan names that file
    with the lines to add (it exists, so it is never written), else a new pytest.ini."""
    options = check(options)
    engine, suite = options.engine, options.suite
    extras = {"embedded": "llama", "vllm": "vllm", "url": "llama"}[engine]
    context: dict[str, Any] = {
        "engine": engine, "suite": suite, "url": options.url, "model": options.model,
        "ci": options.ci, "branch": options.branch, "results_dir": RESULTS_DIR,
        "action_ref": ACTION_REF, "extras": extras}
    files = [Planned(f"{suite}/test_llmperf.py", _render("test_llmperf.py.j2", **context),
                     "the first perf test")]
    if engine == "vllm":
        files.append(Planned(f"{suite}/conftest.py", _render("conftest_vllm.py.j2", **context),
                             "skips the suite, saying why, where vLLM cannot run"))
    config_file = pytest_config_file(config_files or {})
    files.append(Planned(config_file or "pytest.ini", config_text(options, config_file),
                         "the pytest configuration keys"))
    files.append(Planned(".gitignore", _render("gitignore.j2", **context),
                         "ignore rules for the reports and the local baselines"))
    if options.ci == "github":
        inputs: list[tuple[str, str]] = []
        runs_on = "ubuntu-latest"
        if engine == "vllm":
            runs_on = "[self-hosted, gpu]"
            inputs.append(("extras", "vllm"))
        files.append(Planned(".github/workflows/llmperf.yml",
                             _render("github-workflow.yml.j2", **context, runs_on=runs_on,
                                     action_inputs=inputs),
                             f"the CI workflow (uses: {ACTION_REF})"))
    elif options.ci == "gitlab":
        files.append(Planned(".gitlab-ci.yml", _render("gitlab-ci.yml.j2", **context),
                             "the GitLab CI pipeline"))
    if options.k8s:
        base, component, ref = k8s_refs()
        k8s_dir = "k8s/llmperf"
        files.append(Planned(f"{k8s_dir}/kustomization.yaml",
                             _render("kustomization.yaml.j2", **context, k8s_base=base,
                                     k8s_component=component, k8s_ref=ref, k8s_dir=k8s_dir),
                             "the Kubernetes overlay (kubectl kustomize)"))
    return Plan(tuple(files), next_steps(options, [f.path for f in files]))


def next_steps(options: InitOptions, paths: Sequence[str]) -> tuple[str, ...]:
    """The commands to run after ``llmperf init`` (shell lines, with a comment each)."""
    suite = options.suite
    install = {"embedded": "pytest-llmperf[llama]", "vllm": "pytest-llmperf[vllm]",
               "url": "pytest-llmperf[llama]"}[options.engine]
    listed = " ".join(paths)
    return (
        f'pip install "{install}"   # if it is not installed yet',
        f"pytest --llmperf {suite} --llmperf-html {RESULTS_DIR}/report.html"
        "   # the first run, and its report",
        f'git add {listed} && git commit -m "pytest-llmperf: first perf test"',
        f"pytest --llmperf --llmperf-save {suite}   # save this commit's runs as the baseline",
        f"pytest --llmperf {suite}   # later runs compare against the nearest baseline",
    )


def split(files: Sequence[Planned], exists: Callable[[str], bool]
          ) -> tuple[list[Planned], list[Planned]]:
    """(to write, already there): a file that exists is never overwritten."""
    new = [f for f in files if not exists(f.path)]
    there = [f for f in files if exists(f.path)]
    return new, there
