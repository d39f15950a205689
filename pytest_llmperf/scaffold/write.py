"""Writing ``llmperf init``'s plan (``scaffold/plan.py``): each file created only if it does
not exist (``open(..., "x")``: never an overwrite, even against a file that appears between the
check and the write), its folders made as needed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..files import os_reason
from .plan import PYTEST_CONFIGS, Planned


@dataclass(frozen=True)
class Outcome:
    planned: Planned
    written: bool
    reason: str = ""  # why it was not written: "exists", or the OS error


def config_candidates(root: Path) -> Mapping[str, str]:
    """The texts of pytest's candidate configuration files in ``root`` and, inside a git
    repository, in its folders up to the repository's root (pytest looks upwards from the
    tests: a pytest.ini written below one of them would shadow it), keyed by their path
    relative to ``root`` (``../pyproject.toml``)."""
    found: dict[str, str] = {}
    here = root.resolve()
    dirs = [here]
    top = next((d for d in (here, *here.parents) if (d / ".git").exists()), None)
    if top is not None:
        dirs += [d for d in here.parents if d == top or top in d.parents]
    for depth, folder in enumerate(dirs):
        for name, _ in PYTEST_CONFIGS:
            path = folder / name
            if path.is_file():
                try:
                    text = path.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    text = ""
                found["../" * depth + name] = text
    return found


def exists(root: Path, relative: str) -> bool:
    path = root / relative
    return path.exists() or path.is_symlink()


def write(root: Path, files: Sequence[Planned]) -> list[Outcome]:
    """Create each file under ``root`` unless it exists; one outcome per file."""
    out = []
    for planned in files:
        path = root / planned.path
        if ".." in Path(planned.path).parts:  # a configuration file above root: never written
            out.append(Outcome(planned, False, "exists" if exists(root, planned.path)
                               else "outside --dir"))
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8", newline="\n") as fh:
                fh.write(planned.content)
        except FileExistsError:
            out.append(Outcome(planned, False, "exists"))
        except OSError as exc:
            out.append(Outcome(planned, False, os_reason(exc)))
        else:
            out.append(Outcome(planned, True))
    return out
