"""The checks a lent GPU machine runs, in a few minutes, and what they found, written into
docs/engines-verified.md (between its ``gpu-check`` markers). Run through
``scripts/gpu_check.sh``, which sets the import path up first; see that script for how.

Each check records a row: what was checked, what was seen (numbers), and ``ok`` /
``failed`` / ``not run (why)``. Nothing is guessed: a check that cannot run says why.

1. **Device**: NVML's device count, name, driver and memory (nvidia-ml-py), beside
   ``nvidia-smi -L``.
2. **GPU memory** (``gpu_mem_mb``): ``benchmarks/gpu_memory_check.py``, whose known PyTorch
   allocations the plugin's NVML sampler must see.
3. **Energy per token**: the plugin's ``EnergyMeter`` (NVML's total-energy counter) around a
   real greedy generation on the GPU (PyTorch + transformers, a tiny Llama with random
   weights made here, nothing from a hub), and its mean power beside ``nvidia-smi``'s
   ``power.draw`` sampled over the same window; J/token through ``energy.j_per_token``.
4. **One GPU per xdist worker**: a two-worker ``pytest -n 2`` session with the plugin; each
   worker records the ``CUDA_VISIBLE_DEVICES`` it was given and the devices torch sees.
5. **Engines**: each GPU engine the machine can import (vLLM, TensorRT-LLM, llama.cpp with
   CUDA) named with its version; none is installed by this script (the machine reaches no
   index).

Exit status: 0 when every check that ran passed, 1 when one failed, 3 when there is no
NVIDIA GPU (then the document is left as it is).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "engines-verified.md"
START = "<!-- gpu-check:start -->"
END = "<!-- gpu-check:end -->"


@dataclass
class Row:
    check: str
    seen: str
    verdict: str  # "ok", "failed", or "not run: why"


# --------------------------------------------------------------------------- the document


def section(rows: list[Row], machine: str, when: str) -> str:
    """The Markdown the checks leave in the document."""
    lines = [START, "", f"Last run by `scripts/gpu_check.sh` on {when}: {machine}.", "",
             "| Check | What was seen | Verdict |", "| --- | --- | --- |"]
    for r in rows:
        cells = [c.replace("|", "\\|").replace("\n", " ") for c in (r.check, r.seen, r.verdict)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", END])


def splice(doc: str, new: str) -> str:
    """``doc`` with the text between the markers replaced by ``new`` (markers included), or
    ``new`` appended under a heading when the document has no markers yet."""
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        return head + new + rest.split(END, 1)[1]
    return doc.rstrip("\n") + "\n\n## On a GPU machine (scripts/gpu_check.sh)\n\n" + new + "\n"


# --------------------------------------------------------------------------- the checks


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env)


def device() -> tuple[Row, str]:
    import pynvml

    pynvml.nvmlInit()
    try:
        n = pynvml.nvmlDeviceGetCount()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(h)
        name = name.decode() if isinstance(name, bytes) else name
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        mem = pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**30
    finally:
        pynvml.nvmlShutdown()
    smi = run(["nvidia-smi", "-L"], 30).stdout.strip() if shutil.which("nvidia-smi") else ""
    machine = f"{n} x {name}, {mem:.0f} GiB, driver {driver}"
    return Row("NVML device (nvidia-ml-py)", f"{machine}; nvidia-smi -L: {smi or 'absent'}",
               "ok" if n >= 1 else "failed"), machine


def gpu_memory() -> Row:
    proc = run([sys.executable, "benchmarks/gpu_memory_check.py"], 300)
    tail = " ".join(proc.stdout.strip().splitlines()[-4:])
    return Row("`gpu_mem_mb`: benchmarks/gpu_memory_check.py (known PyTorch allocations)",
               tail or proc.stderr.strip()[-300:], "ok" if proc.returncode == 0 else "failed")


def _smi_power(stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        p = run(["nvidia-smi", "--query-gpu=power.draw", "--format=csv,noheader,nounits",
                 "-i", "0"], 10)
        with contextlib.suppress(IndexError, ValueError):
            out.append(float(p.stdout.split()[0]))
        stop.wait(0.2)


def energy_per_token() -> Row:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pytest_llmperf.run.energy import EnergyMeter, j_per_token

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=4096,
                         num_hidden_layers=8, num_attention_heads=16, num_key_value_heads=16,
                         max_position_embeddings=4096)
    model = LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
    prompt = torch.randint(0, 32000, (32, 128), device="cuda")
    new_tokens = 256
    kwargs: dict[str, Any] = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens,
                              "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        model.generate(prompt, **{**kwargs, "max_new_tokens": 8, "min_new_tokens": 8})
    torch.cuda.synchronize()
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_smi_power, args=(stop, samples), daemon=True)
    with EnergyMeter() as meter:
        if meter.gpu_reason:
            return Row("energy per token (NVML total-energy counter)", meter.gpu_reason,
                       "failed")
        sampler.start()
        t0 = time.perf_counter()
        meter.start()
        with torch.no_grad():
            out = model.generate(prompt, **kwargs)
        torch.cuda.synchronize()
        meter.stop()
        seconds = time.perf_counter() - t0
        stop.set()
        sampler.join(5)
    tokens = int((out.shape[1] - prompt.shape[1]) * out.shape[0])
    joules = meter.gpu_j
    per_token = j_per_token(joules, tokens)
    if joules is None or per_token is None:
        return Row("energy per token", meter.gpu_reason or "no figure", "failed")
    watts = joules / seconds
    smi = sum(samples) / len(samples) if samples else None
    seen = (f"{tokens} tokens (32 sequences x {new_tokens}, tiny random Llama, bf16) in "
            f"{seconds:.2f} s: {joules:.1f} J, {per_token * 1e3:.2f} mJ/token; mean power "
            f"{watts:.0f} W by the counter"
            + (f", {smi:.0f} W by nvidia-smi power.draw ({len(samples)} samples)"
               if smi is not None else ", nvidia-smi power.draw not read"))
    # The counter's mean power and nvidia-smi's sampled power.draw agree within 25% (the
    # sampled figure is a moving average); the energy is positive and below 1 kW x time.
    agree = smi is None or abs(watts - smi) <= 0.25 * max(watts, smi)
    return Row("energy per token: `EnergyMeter` (NVML) around a real greedy generation",
               seen, "ok" if 0 < watts < 1000 and agree else "failed")


PIN_TEST = '''
import json, os
def test_worker(worker_id):
    import torch
    seen = {"worker": worker_id, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "torch_devices": torch.cuda.device_count()}
    with open(os.environ["PIN_OUT"] + "." + worker_id, "w") as f:
        json.dump(seen, f)
def test_other(worker_id):
    test_worker(worker_id)
'''


def xdist_pinning() -> Row:
    if importlib.util.find_spec("xdist") is None:
        return Row("one GPU per xdist worker", "pytest-xdist not installed", "not run: no xdist")
    with tempfile.TemporaryDirectory() as tmp:
        test = Path(tmp) / "test_pin.py"
        test.write_text(PIN_TEST)
        env = {**os.environ, "PIN_OUT": str(Path(tmp) / "seen")}
        env.pop("CUDA_VISIBLE_DEVICES", None)
        installed = any(e.name == "llmperf"
                        for e in importlib.metadata.entry_points(group="pytest11"))
        plugin = [] if installed else ["-p", "pytest_llmperf.plugin"]
        proc = run([sys.executable, "-m", "pytest", "-q", *plugin, "-p", "no:cacheprovider",
                    "-n", "2", "--dist", "each", str(test)], 300, env)
        seen = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("seen.gw*"))]
    warned = "xdist workers share" in proc.stdout
    text = "; ".join(f"{s['worker']}: CUDA_VISIBLE_DEVICES={s['CUDA_VISIBLE_DEVICES']}, "
                     f"torch sees {s['torch_devices']}" for s in seen)
    ok = proc.returncode == 0 and len(seen) == 2 and all(
        s["CUDA_VISIBLE_DEVICES"] is not None and s["torch_devices"] == 1 for s in seen)
    return Row("one GPU per xdist worker (`pytest -n 2`)",
               (text or proc.stdout[-300:]) + ("; the controller warned of more workers "
                                               "than GPUs" if warned else ""),
               "ok" if ok else "failed")


def engines() -> list[Row]:
    rows = []
    for module, what in (("vllm", "vLLM"), ("tensorrt_llm", "TensorRT-LLM"),
                         ("llama_cpp", "llama-cpp-python")):
        if importlib.util.find_spec(module) is None:
            rows.append(Row(f"engine: {what}", "not installed on this machine's image",
                            "not run: not installed"))
            continue
        try:
            version = getattr(importlib.import_module(module), "__version__", "?")
        except Exception as exc:  # an engine whose import fails is a finding too
            rows.append(Row(f"engine: {what}", f"import failed: {exc}", "failed"))
            continue
        rows.append(Row(f"engine: {what}", f"importable, version {version}; run its suite "
                        f"by hand (example_suites/) while the machine is held",
                        "not run: by hand"))
    return rows


def guarded(name: str, fn: Any) -> list[Row]:
    try:
        got = fn()
    except Exception as exc:  # one check failing must not lose the others' findings
        return [Row(name, f"{type(exc).__name__}: {exc}"[:400], "failed")]
    return got if isinstance(got, list) else [got]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc", type=Path, default=DOC,
                        help="the document to write the findings into")
    parser.add_argument("--out", type=Path, default=None,
                        help="also copy the document there (the device tool's $OUT)")
    args = parser.parse_args(argv)
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception as exc:
        print(f"gpu_check: no NVIDIA GPU here ({type(exc).__name__}: {exc}); nothing written")
        return 3
    first, machine = device()
    rows = [first]
    for name, fn in (("gpu memory", gpu_memory), ("energy per token", energy_per_token),
                     ("xdist pinning", xdist_pinning), ("engines", engines)):
        t0 = time.perf_counter()
        got = guarded(name, fn)
        rows += got
        for r in got:
            print(f"gpu_check: {r.check}: {r.verdict} ({time.perf_counter() - t0:.0f} s): "
                  f"{r.seen}", flush=True)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.doc.write_text(splice(args.doc.read_text(), section(rows, machine, when)))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.doc, args.out / args.doc.name)
    print(f"gpu_check: findings written to {args.doc}")
    return 1 if any(r.verdict == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
