"""A real GGUF's tokenizer and chat-template hashes (issue 25) through llama-cpp-python: the
embedded engine's info(), a GGUF tokenizer and a served engine using one report them, a
template change moves only the template's hash, and the baseline profile is the same either
way."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.engines import fingerprint
from pytest_llmperf.engines.llama_cpp import LlamaCppEngine, LlamaCppSettings
from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.engines.tokenizers import GgufTokenizer
from pytest_llmperf.store.profile import make_profile, profile_id
from pytest_llmperf.testing.oracle import OracleConfig, OracleServer, WordTokenizer
from pytest_llmperf.testing.tiny_model import write_tiny_gguf

pytest.importorskip("llama_cpp", reason="the embedded engine needs the 'llama' extra")

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
HW = {"cpu_model": "Test CPU", "cpu_cores": 1, "machine": "x86_64", "os": "Linux"}


def test_a_gguf_reports_its_vocabulary_and_chat_template(tmp_path: Path) -> None:
    plain = write_tiny_gguf(tmp_path / "plain.gguf")
    chat = write_tiny_gguf(tmp_path / "chat.gguf", chat_template=TEMPLATE)
    other = write_tiny_gguf(tmp_path / "other.gguf", chat_template=TEMPLATE + " ")
    a, b, c = (GgufTokenizer(p).fingerprint() for p in (plain, chat, other))
    assert set(a) == {"tokenizer_hash"}  # no template in the file: no key
    assert b["chat_template_hash"] == fingerprint.template_hash(TEMPLATE)
    assert c["chat_template_hash"] != b["chat_template_hash"]
    assert a["tokenizer_hash"] == b["tokenizer_hash"] == c["tokenizer_hash"]
    assert GgufTokenizer(chat).fingerprint() == b  # the same file, the same hashes

    engine = LlamaCppEngine(LlamaCppSettings(str(chat), n_threads=1, n_ctx=256))
    try:
        info = engine.info()
    finally:
        engine.close()
    assert info["tokenizer_hash"] == b["tokenizer_hash"]
    assert info["chat_template_hash"] == b["chat_template_hash"]
    stripped = {k: v for k, v in info.items() if k not in fingerprint.KEYS}
    assert profile_id(make_profile(info, HW)) == profile_id(make_profile(stripped, HW))


def test_a_served_engine_with_a_local_tokenizer_reports_its_hashes(tmp_path: Path) -> None:
    chat = write_tiny_gguf(tmp_path / "chat.gguf", chat_template=TEMPLATE)
    with OracleServer(OracleConfig(ttft_ms=1, itl_ms=1)) as oracle:
        local = OpenAIEngine(oracle.url, tokenizer=GgufTokenizer(chat), model="oracle")
        served = OpenAIEngine(oracle.url, tokenizer=WordTokenizer(), model="oracle")
        try:
            info, other = local.info(), served.info()
        finally:
            local.close()
            served.close()
    assert info["chat_template_hash"] == fingerprint.template_hash(TEMPLATE)
    assert info["tokenizer_hash"] == GgufTokenizer(chat).fingerprint()["tokenizer_hash"]
    assert not set(other) & set(fingerprint.KEYS)  # a tokenizer without a fingerprint
