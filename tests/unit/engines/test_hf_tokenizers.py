"""Hugging Face tokenizers: ``--llmperf-tokenizer`` with a local directory or tokenizer.json
(for servers without a tokenize endpoint), and exact-length prompts from any vocabulary, under
tokenizers trained offline (``helpers.wordlevel``, ``byte_level_bpe``, ``unigram``).

Split by tier from tests/test_hf_tokenizers.py: these are its unit tests; the others, against
the test oracle's server, are in tests/sessions/test_hf_tokenizers_session.py.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Imported here, before any in-process pytester session: a PyO3 extension cannot be
# initialised twice in one interpreter, and pytester drops modules first imported inside it.
tokenizers = pytest.importorskip("tokenizers", reason="needs the 'hf' extra (tokenizers)")

from helpers import byte_level_bpe, unigram, wordlevel  # noqa: E402
from helpers import save_tokenizer_dir as save_dir  # noqa: E402

from pytest_llmperf.engines.base import EngineError  # noqa: E402
from pytest_llmperf.engines.tokenizers import (  # noqa: E402
    HFTokenizer,
    load_hf_tokenizer,
    local_tokenizer,
)
from pytest_llmperf.run.workload import (  # noqa: E402
    Workload,
    WorkloadError,
    synthetic_prompts,
)

KINDS: dict[str, Callable[[], Any]] = {
    "wordlevel": wordlevel, "byte_level_bpe": byte_level_bpe, "unigram": unigram}


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    return {name: make() for name, make in KINDS.items()}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_prompts_have_exact_lengths_under_any_vocabulary(trained: dict[str, Any],
                                                         kind: str) -> None:
    tok = HFTokenizer(trained[kind])
    pool = list(tok.word_token_ids())
    assert len(pool) >= 16, pool
    assert not set(pool) & tok.special_ids()
    n_special = len(tok.tokenize("", add_special=True))
    assert n_special == (1 if kind == "wordlevel" else 0)
    for n, prefix in ((1 + n_special, 0), (7, 0), (64, 20), (300, 150)):
        prompts = synthetic_prompts(tok, Workload(input_tokens=n, output_tokens=4, requests=4,
                                                  shared_prefix_tokens=prefix))
        assert len(prompts) == 5  # the warm-up request too
        for p in prompts:
            ids = tok.tokenize(p.text)
            assert len(ids) == p.input_tokens == n, (kind, n, p.text)
            assert p.token_ids == tuple(ids)
            assert not set(ids[n_special:]) & tok.special_ids()
        if prefix:  # every prompt starts with the same prefix tokens
            heads = {p.token_ids[:n_special + prefix] for p in prompts if p.token_ids}
            assert len(heads) == 1
        assert len({p.text for p in prompts}) == 5  # different per request
        again = synthetic_prompts(tok, Workload(input_tokens=n, output_tokens=4, requests=4,
                                                shared_prefix_tokens=prefix))
        assert [p.text for p in again] == [p.text for p in prompts]  # deterministic


def test_a_wordlevel_vocabulary_has_no_word_piece_markers(trained: dict[str, Any]) -> None:
    """What made prompts impossible before: pieces are recognised by the round trip, not by
    a leading ▁ or Ġ, which a WordLevel vocabulary never has."""
    vocab = trained["wordlevel"].get_vocab()
    assert not any(piece.startswith(("\u2581", "\u0120")) for piece in vocab)
    tok = HFTokenizer(trained["wordlevel"])
    words = {tok.detokenize([t]) for t in tok.word_token_ids()}
    assert {"the", "river", "water"} <= words


def test_a_tokenizer_with_nothing_usable_is_a_clear_workload_error() -> None:
    """A vocabulary of special tokens only: no id survives a round trip through text."""
    from tokenizers import Tokenizer, models

    bare = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    bare.add_special_tokens(["[UNK]"])
    with pytest.raises(WorkloadError, match="no tokens that survive a round trip"):
        synthetic_prompts(HFTokenizer(bare), Workload(input_tokens=8, requests=1))


def test_local_tokenizer_reads_a_directory_or_a_tokenizer_json(tmp_path: Path) -> None:
    d = save_dir(byte_level_bpe(), tmp_path / "bpe")
    for spec, label in ((d, "hf:bpe"), (d / "tokenizer.json", "hf:tokenizer.json")):
        tok = local_tokenizer(str(spec))
        assert isinstance(tok, HFTokenizer) and tok.label == label
        assert tok.tokenize("the river", add_special=False) == (
            byte_level_bpe().encode("the river").ids)
    renamed = tmp_path / "vocab.bin"  # a tokenizer.json under another name: read by content
    renamed.write_bytes((d / "tokenizer.json").read_bytes())
    assert isinstance(local_tokenizer(str(renamed)), HFTokenizer)


def one_line(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message


def test_bad_tokenizer_paths_are_one_line_errors(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineError, match="no such file or directory") as err:
        local_tokenizer(str(tmp_path / "missing"))
    one_line(str(err.value))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError, match=r"no tokenizer\.json or tokenizer_config\.json"):
        local_tokenizer(str(tmp_path / "empty"))
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": {"type": "nothing"}}')
    with pytest.raises(EngineError, match="could not read the Hugging Face tokenizer") as err:
        local_tokenizer(str(bad))
    one_line(str(err.value))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not a tokenizer")
    with pytest.raises(EngineError, match="neither a GGUF file nor a Hugging Face tokenizer"):
        local_tokenizer(str(junk))
    good = save_dir(wordlevel(), tmp_path / "good")
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(EngineError, match=r"needs the tokenizers package: pip install "
                                          r"'pytest-llmperf\[hf\]'") as err:
        load_hf_tokenizer(good)
    one_line(str(err.value))


def test_a_transformers_tokenizer_directory(tmp_path: Path) -> None:
    """A directory with tokenizer_config.json loads through transformers when it is there
    (as vLLM and TGI load it)."""
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=byte_level_bpe(),
                                                bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(str(tmp_path / "hf"))
    tok = local_tokenizer(str(tmp_path / "hf"))
    assert isinstance(tok, HFTokenizer) and not tok._bare
    prompts = synthetic_prompts(tok, Workload(input_tokens=40, output_tokens=4, requests=2))
    assert all(len(fast.encode(p.text)) == 40 for p in prompts)
