"""scripts/gpu_check.py, the lent GPU machine's prepared checks: on this machine (no NVIDIA GPU,
no nvidia-ml-py) it says so, exits 3 and leaves the document as it was; its findings replace
what stands between the document's markers and nothing else."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from helpers import ROOT

SCRIPT = ROOT / "scripts" / "gpu_check.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path: Path) -> None:
    doc = tmp_path / "engines-verified.md"
    text = (ROOT / "docs" / "engines-verified.md").read_text()
    doc.write_text(text)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--doc", str(doc), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.startswith("gpu_check: no NVIDIA GPU here (")
    assert "Traceback" not in proc.stderr
    assert doc.read_text() == text and not (tmp_path / "out").exists()


def test_findings_replace_only_the_marked_section() -> None:
    gpu_check = load()
    rows = [gpu_check.Row("energy per token", "12.5 J | 3 mJ/token", "ok"),
            gpu_check.Row("engine: vLLM", "not installed", "not run: not installed")]
    new = gpu_check.section(rows, "1 x NVIDIA H100", "2026-12-06 10:00 UTC")
    doc = (ROOT / "docs" / "engines-verified.md").read_text()
    assert gpu_check.START in doc and gpu_check.END in doc  # the document has its markers
    out = gpu_check.splice(doc, new)
    head = doc.split(gpu_check.START)[0]
    tail = doc.split(gpu_check.END)[1]
    assert out == head + new + tail
    assert "| energy per token | 12.5 J \\| 3 mJ/token | ok |" in out
    assert "Not run yet" not in out
    # Twice is the same as once; a document without markers gets the section appended.
    assert gpu_check.splice(out, new) == out
    bare = gpu_check.splice("# Title\n", new)
    assert bare.startswith("# Title\n\n## On a GPU machine") and bare.endswith(gpu_check.END + "\n")
