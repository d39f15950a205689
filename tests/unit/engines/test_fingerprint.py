"""Tokenizer and chat-template hashes (engines/fingerprint.py, issue 25): what the tokenizers
report, that the baseline profile ignores them, and that the attribution shows them when the
two sides' differ."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pytest_llmperf.engines import fingerprint
from pytest_llmperf.engines.llama_cpp import LlamaCppTokenizer
from pytest_llmperf.engines.tokenizers import HFTokenizer
from pytest_llmperf.store.profile import (
    ATTRIBUTION_ONLY_ENGINE_KEYS,
    engine_part,
    make_profile,
    profile_id,
)
from pytest_llmperf.verdict.attribution import attribution, attribution_lines

HW = {"cpu_model": "Test CPU", "cpu_cores": 2, "machine": "x86_64", "os": "Linux"}
INFO: dict[str, Any] = {
    "kind": "llama_cpp", "version": "0.3.16", "model": "gemma-3-270m-q4_k_m.gguf",
    "model_path": "/nonexistent/gemma-3-270m-q4_k_m.gguf", "architecture": "gemma3",
    "settings": {"n_threads": 2, "n_ctx": 2048, "n_batch": 512}, "load_s": 0.5}
# This info's profile id before engines reported the hashes (computed with the code of main
# at 57b3a7a): the stored baselines' ids, which the new keys must not change.
STORED_ID = "llama_cpp-gemma-3-270m-q4_k_m-c0ced2595e"
HASHES = {"tokenizer_hash": "sha256:0123456789abcdef",
          "chat_template_hash": "sha256:fedcba9876543210"}


def test_the_hashes_do_not_change_the_profile_id_of_stored_baselines() -> None:
    assert profile_id(make_profile(INFO, HW)) == STORED_ID
    with_hashes = {**INFO, **HASHES}
    assert make_profile(with_hashes, HW) == make_profile(INFO, HW)
    assert profile_id(make_profile(with_hashes, HW)) == STORED_ID
    other = {**INFO, "tokenizer_hash": "sha256:1111111111111111",
             "chat_template_hash": "sha256:2222222222222222"}
    assert profile_id(make_profile(other, HW)) == STORED_ID
    assert not set(engine_part(with_hashes)) & ATTRIBUTION_ONLY_ENGINE_KEYS
    assert set(fingerprint.KEYS) == ATTRIBUTION_ONLY_ENGINE_KEYS
    # A setting still changes it (the exclusion is for these keys only).
    assert profile_id(make_profile({**INFO, "settings": {"n_threads": 4}}, HW)) != STORED_ID


def run(engine: dict[str, Any]) -> dict[str, Any]:
    return {"summary": {"ttft_p50_ms": 10.0}, "engine": engine}


def test_the_attribution_shows_a_changed_chat_template() -> None:
    base = {**INFO, **HASHES}
    now = {**base, "chat_template_hash": "sha256:aaaaaaaaaaaaaaaa", "load_s": 0.7}
    block = attribution([run(base)], [run(now)])
    assert block["environment"] == [
        "chat_template_hash: baseline 'sha256:fedcba9876543210', now 'sha256:aaaaaaaaaaaaaaaa'"]
    assert ("    engine: chat_template_hash: baseline 'sha256:fedcba9876543210', now "
            "'sha256:aaaaaaaaaaaaaaaa'") in attribution_lines(block)
    tok = {**base, "tokenizer_hash": "sha256:bbbbbbbbbbbbbbbb"}
    assert attribution([run(base)], [run(tok)])["environment"] == [
        "tokenizer_hash: baseline 'sha256:0123456789abcdef', now 'sha256:bbbbbbbbbbbbbbbb'"]
    assert attribution([run(base)], [run(dict(base))])["environment"] == []


def test_a_baseline_from_before_the_hashes_is_not_a_tokenizer_change() -> None:
    old, now = dict(INFO), {**INFO, **HASHES}
    assert attribution([run(old)], [run(now)])["environment"] == []
    assert attribution([run(now)], [run(old)])["environment"] == []
    # Other differences still show.
    moved = {**now, "version": "0.3.17"}
    assert attribution([run(old)], [run(moved)])["environment"] == [
        "version: baseline '0.3.16', now '0.3.17'"]


def test_hashes_are_short_stable_and_tell_vocabularies_apart() -> None:
    a = fingerprint.vocabulary_hash(["<s>", "a", "b"])
    assert a == fingerprint.vocabulary_hash([b"<s>", b"a", b"b"])
    assert a.startswith("sha256:") and len(a) == 7 + fingerprint.DIGITS
    assert a != fingerprint.vocabulary_hash(["<s>", "b", "a"])  # order is the id
    assert a != fingerprint.vocabulary_hash(["<s>a", "b"])  # pieces are length-prefixed
    assert fingerprint.vocab_mapping_hash({"b": 2, "a": 1, "<s>": 0}) == a
    assert fingerprint.template_hash(None) is None
    assert fingerprint.template_hash("") is None
    t = fingerprint.template_hash("{{ messages }}")
    assert t == fingerprint.template_hash(b"{{ messages }}")
    assert t != fingerprint.template_hash("{{ messages }} ")
    assert (fingerprint.template_hash({"default": "x", "tool_use": "y"})
            == fingerprint.template_hash({"tool_use": "y", "default": "x"}))


class FakeHF:
    """What HFTokenizer uses of a transformers tokenizer."""

    def __init__(self, vocab: dict[str, int], chat_template: Any = None) -> None:
        self.vocab = vocab
        self.chat_template = chat_template
        self.calls = 0

    def get_vocab(self) -> dict[str, int]:
        self.calls += 1
        return dict(self.vocab)


def test_an_hf_tokenizer_reports_its_vocabulary_and_chat_template() -> None:
    vocab = {"<s>": 0, "hello": 1, "world": 2}
    tok = FakeHF(vocab, "{% for m in messages %}{{ m.content }}{% endfor %}")
    found = HFTokenizer(tok).fingerprint()
    assert found == {"tokenizer_hash": fingerprint.vocab_mapping_hash(vocab),
                     "chat_template_hash": fingerprint.template_hash(tok.chat_template)}
    wrapped = HFTokenizer(tok)
    wrapped.fingerprint()
    wrapped.fingerprint()
    assert tok.calls == 2  # once per HFTokenizer (above and here): made once, then kept
    other = HFTokenizer(FakeHF(vocab, "{{ messages }}")).fingerprint()
    assert other["tokenizer_hash"] == found["tokenizer_hash"]
    assert other["chat_template_hash"] != found["chat_template_hash"]
    bare = HFTokenizer(FakeHF(vocab)).fingerprint()
    assert bare == {"tokenizer_hash": found["tokenizer_hash"]}  # no template: no key


def fake_llama(pieces: list[bytes], metadata: dict[str, str]) -> tuple[Any, Any]:
    lc = SimpleNamespace(
        llama_vocab_n_tokens=lambda v: len(pieces),
        llama_vocab_get_text=lambda v, t: pieces[t],
        llama_vocab_get_score=lambda v, t: -float(t),
        llama_vocab_get_attr=lambda v, t: 2)
    llm = SimpleNamespace(_model=SimpleNamespace(vocab=object()), metadata=metadata)
    return llm, lc


def test_a_llama_cpp_tokenizer_reports_its_vocabulary_and_gguf_chat_template() -> None:
    pieces = [b"<unk>", b"<s>", b"\xe2\x96\x81hello"]
    llm, lc = fake_llama(pieces, {"tokenizer.chat_template": "{{ messages }}",
                                  "general.architecture": "llama"})
    found = LlamaCppTokenizer(llm, lc).fingerprint()
    assert found["chat_template_hash"] == fingerprint.template_hash("{{ messages }}")
    assert found["tokenizer_hash"].startswith("sha256:")
    same = LlamaCppTokenizer(*fake_llama(pieces, {})).fingerprint()
    assert same == {"tokenizer_hash": found["tokenizer_hash"]}
    other = LlamaCppTokenizer(*fake_llama([*pieces[:2], b"\xe2\x96\x81world"], {}))
    assert other.fingerprint()["tokenizer_hash"] != found["tokenizer_hash"]
    # Named templates (tokenizer.chat_template.tool_use) count too.
    named = LlamaCppTokenizer(*fake_llama(pieces, {
        "tokenizer.chat_template": "{{ messages }}",
        "tokenizer.chat_template.tool_use": "{{ tools }}"})).fingerprint()
    assert named["chat_template_hash"] != found["chat_template_hash"]


def test_a_tokenizer_without_a_fingerprint_or_a_failing_one_gives_nothing() -> None:
    class Broken:
        def fingerprint(self) -> dict[str, str]:
            raise RuntimeError("vocabulary unreadable")

    assert fingerprint.of(None) == {}
    assert fingerprint.of(object()) == {}
    assert fingerprint.of(Broken()) == {}
    partial = SimpleNamespace(fingerprint=lambda: {"tokenizer_hash": "sha256:1", "x": "y",
                                                   "chat_template_hash": None})
    assert fingerprint.of(partial) == {"tokenizer_hash": "sha256:1"}
