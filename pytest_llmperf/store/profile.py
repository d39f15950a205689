"""Profiles: what must match for two measurements to be comparable.

A profile holds the engine (kind, version, model name, size and content hash, format and the
settings that change speed) and the hardware (CPU model and cores, or GPU name and driver).
Its id is readable and stable: ``<engine>-<model>-<hash of the contents>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

# Engine info keys that describe one process or one machine's paths, not the configuration.
VOLATILE_ENGINE_KEYS: frozenset[str] = frozenset(
    {"load_s", "model_path", "url", "base_url", "pid", "started_at", "server_pid", "log_path",
     "api_key", "api_key_env", "profile_id"}
)
# Engine info keys kept out of the profile but shown by the attribution when they differ
# (issue 25): the tokenizer's and chat template's hashes (``engines.fingerprint``). In the
# profile they would orphan every baseline stored before engines reported them; a changed
# tokenizer or template shows in the prompts digest and in "what moved with it".
ATTRIBUTION_ONLY_ENGINE_KEYS: frozenset[str] = frozenset({"tokenizer_hash", "chat_template_hash"})
FULL_HASH_LIMIT = 1 << 30  # hash whole files up to 1 GiB; larger ones are sampled
SAMPLE_BYTES = 8 << 20


@cache
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
            return "sha256:" + h.hexdigest()
        # Sampled: the size plus 8 MiB at the start, the middle and the end.
        h.update(str(size).encode())
        for offset in (0, size // 2, size - SAMPLE_BYTES):
            fh.seek(max(0, offset))
            h.update(fh.read(SAMPLE_BYTES))
    return "sha256-sampled:" + h.hexdigest()


def model_hash(path: str | Path) -> str | None:
    """The content hash of a model file (cached per path, size and mtime); None if unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not Path(path).is_file():
        return None
    try:
        return _hash_file(str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[dict[str, Any]]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            out.append({
                "name": name.decode() if isinstance(name, bytes) else str(name),
                "driver": driver.decode() if isinstance(driver, bytes) else str(driver),
                "memory_mb": int(mem // (1 << 20)),
            })
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            keep = [int(v) for v in visible.split(",") if v.strip().isdigit()]
            out = [g for i, g in enumerate(out) if i in keep] or out
        return out
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


@cache
def hardware() -> dict[str, Any]:
    """This machine: CPU model, logical cores usable by this process, architecture, GPUs."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    hw: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_cores": usable,
        "machine": platform.machine(),
        "os": platform.system(),
    }
    gpus = _gpus()
    if gpus:
        hw["gpus"] = gpus
    return hw


# A server the plugin started: what changes from one start to the next.
VOLATILE_SERVER_KEYS: frozenset[str] = frozenset({"pid", "url", "log", "startup_s"})


def server_part(server: Mapping[str, Any]) -> dict[str, Any]:
    """The comparable part of a started server's info: its recipe and command, without the
    pid, URL, log path, start-up time or the free port it was given."""
    out = {k: v for k, v in server.items() if k not in VOLATILE_SERVER_KEYS}
    command = out.get("command")
    if isinstance(command, str):
        out["command"] = re.sub(r"(--port[ =])\d+", r"\1{port}", command)
    return out


def engine_part(info: Mapping[str, Any]) -> dict[str, Any]:
    """The comparable part of engine.info(): volatile keys dropped (a started server's too),
    and the attribution-only ones (``ATTRIBUTION_ONLY_ENGINE_KEYS``), the model hash added."""
    out = {k: v for k, v in info.items()
           if k not in VOLATILE_ENGINE_KEYS and k not in ATTRIBUTION_ONLY_ENGINE_KEYS}
    if isinstance(out.get("server"), Mapping):
        out["server"] = server_part(out["server"])
    path = info.get("model_path")
    if path and "model_hash" not in out:
        digest = model_hash(path)
        if digest is not None:
            out["model_hash"] = digest
    return out


def make_profile(engine_info: Mapping[str, Any],
                 hw: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The profile of a run: {"engine": ..., "hardware": ...}."""
    return {"engine": engine_part(engine_info),
            "hardware": dict(hardware() if hw is None else hw)}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:48] or "x"


def profile_id(profile: Mapping[str, Any]) -> str:
    """Readable and stable: engine kind, model stem, 10 hex digits of the canonical contents."""
    engine = profile.get("engine", {})
    canonical = json.dumps(profile, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    model = str(engine.get("model") or engine.get("server_model") or "model")
    stem = model.rsplit("/", 1)[-1]
    if stem.lower().endswith(".gguf"):
        stem = stem[:-5]
    return f"{_slug(str(engine.get('kind', 'engine')))}-{_slug(stem)}-{digest}"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(data, list) and data and all(isinstance(x, Mapping) for x in data):
        out = {}
        for i, v in enumerate(data):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): data}


def differences(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Each differing field as 'field: baseline X, now Y', sorted by field."""
    a, b = _flatten(baseline), _flatten(current)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            before, now = a.get(key, "(absent)"), b.get(key, "(absent)")
            out.append(f"{key}: baseline {before!r}, now {now!r}")
    return out


def mismatch_message(baseline: Mapping[str, Any], current: Mapping[str, Any],
                     where: str = "") -> str:
    diffs = differences(baseline, current)
    head = f"the baseline{(' ' + where) if where else ''} was measured with a different profile"
    shown = diffs[:8]
    more = f"; and {len(diffs) - 8} more" if len(diffs) > 8 else ""
    return f"{head}; numbers are not comparable ({'; '.join(shown)}{more})"
