"""``llmperf init`` through the CLI's parser, in-process, into a temporary directory: the exit
statuses (0 written, 1 nothing written, 2 bad flags in one line), never an overwrite, and
--dry-run writing nothing. The run with a real engine in a git repository is
tests/e2e/test_init_e2e.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.cli import main


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_writes_then_refuses_to_overwrite(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    first = tree(tmp_path)
    assert set(first) == {"tests/perf/test_llmperf.py", "pytest.ini", ".gitignore",
                          ".github/workflows/llmperf.yml"}
    assert out.count("\nwrote ") == 4
    assert "pytest --llmperf tests/perf" in out
    (tmp_path / ".gitignore").write_text("mine\n")
    assert main(["init", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.count("exists, not changed: ") == 4
    assert "exists, not changed: .gitignore;" in out
    assert "    | llmperf-results/\n" in out  # what it would have added
    assert "nothing written" in out
    assert (tmp_path / ".gitignore").read_text() == "mine\n"
    assert {k: v for k, v in tree(tmp_path).items() if k != ".gitignore"} == \
        {k: v for k, v in first.items() if k != ".gitignore"}


def test_writes_the_missing_files_only(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-q'\n")
    assert main(["init", "--dir", str(tmp_path), "--ci", "gitlab"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "pytest.ini").exists()  # it would shadow pyproject's table
    assert (tmp_path / "pyproject.toml").read_text() == \
        "[tool.pytest.ini_options]\naddopts = '-q'\n"
    assert "exists, not changed: pyproject.toml;" in out
    assert '    | llmperf_engine = "llama_cpp"\n' in out
    assert (tmp_path / ".gitlab-ci.yml").is_file()


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--dir", str(tmp_path), "--dry-run", "--k8s"]) == 0
    out = capsys.readouterr().out
    assert tree(tmp_path) == {}
    assert "would write k8s/llmperf/kustomization.yaml" in out
    assert "    | from pytest_llmperf import Workload, llmperf\n" in out


@pytest.mark.parametrize("argv", [
    ["init", "--engine", "tgi"],
    ["init", "--engine", "url"],
    ["init", "--suite", "../x"],
    ["init", "--model", "m"],
    ["init", "--dir", "/nonexistent/llmperf-init"],
])
def test_bad_flags_are_one_line_and_exit_2(argv: list[str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    if "--dir" not in argv:
        argv = [*argv, "--dir", str(tmp_path)]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors (choices)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert tree(tmp_path) == {}


def test_a_configuration_up_the_repository_is_found(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """pytest looks for its configuration upwards from the tests: a pytest.ini written in a
    sub-project would shadow the repository's pyproject.toml table. Only up to the repository's
    root (a folder with .git): a configuration above it is not the project's."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # outside the repository: not looked at
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    sub = repo / "services" / "llm"
    sub.mkdir(parents=True)
    assert main(["init", "--dir", str(sub), "--ci", "none"]) == 0
    out = capsys.readouterr().out
    assert not (sub / "pytest.ini").exists()
    assert "exists, not changed: ../../pyproject.toml;" in out
    assert (repo / "pyproject.toml").read_text() == "[tool.pytest.ini_options]\n"
    assert f"  cd {sub}\n" in out
    assert main(["init", "--dir", str(tmp_path / "elsewhere")]) == 2  # no such folder
    capsys.readouterr()
    outside = tmp_path / "outside"
    outside.mkdir()
    assert main(["init", "--dir", str(outside), "--ci", "none"]) == 0
    assert (outside / "pytest.ini").is_file()  # tmp_path/pytest.ini is not its repository's
