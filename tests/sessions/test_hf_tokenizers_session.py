"""Hugging Face tokenizers: ``--llmperf-tokenizer`` with a local directory or tokenizer.json
(for servers without a tokenize endpoint), and exact-length prompts from any vocabulary.

Every tokenizer here is trained offline by the ``tokenizers`` library (tests/helpers.py):
WordLevel (no word-piece markers at all), byte-level BPE (``Ġ``) and a SentencePiece-like
Unigram (``▁``, Metaspace). The server is the test oracle, which tokenizes by its own word
list: the prompts' lengths are checked under the tokenizer given, as a server using it would
count them.

Split by tier from tests/test_hf_tokenizers.py: these are its sessions tests; the others are in
tests/unit/engines/test_hf_tokenizers.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import byte_level_bpe, unigram
from helpers import save_tokenizer_dir as save_dir

from pytest_llmperf.engines.openai import OpenAIEngine
from pytest_llmperf.engines.tokenizers import (
    HFTokenizer,
)
from pytest_llmperf.testing.oracle import OracleServer


def test_a_served_session_builds_prompts_with_the_given_tokenizer(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The oracle has a tokenize endpoint of its own; --llmperf-tokenizer overrides it, and
    every prompt it received has exactly the asked length under the tokenizer given."""
    bpe = byte_level_bpe()
    d = save_dir(bpe, tmp_path / "bpe-tok")
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf(max_errors=0)
        def test_served(llmperf_bench, llm_engine):
            result = llmperf_bench(llm_engine, Workload(input_tokens=48, output_tokens=4,
                                                        requests=3, shared_prefix_tokens=16))
            assert {r.prompt_tokens for r in result.samples} == {48}
        """
    )
    for spec, label in ((d, "hf:bpe-tok"), (d / "tokenizer.json", "hf:tokenizer.json")):
        out = pytester.path / "out.json"
        with OracleServer() as oracle:
            result = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                        f"--llmperf-tokenizer={spec}", f"--llmperf-json={out}")
            result.assert_outcomes(passed=1)
            assert oracle.tokenize_requests == 0  # the server's tokenizer was not asked
            prompts = [log.prompt for log in oracle.logs]
        assert len(prompts) == 4
        assert [len(bpe.encode(p).ids) for p in prompts] == [48] * 4
        assert len(set(prompts)) == 4
        run = json.loads(out.read_text())["tests"][0]["runs"][0]
        assert run["engine"]["tokenizer"] == label
        assert run["summary"]["input_tokens"] == 3 * 48


def test_a_missing_tokenizer_is_a_clean_session_error(pytester: pytest.Pytester,
                                                      tmp_path: Path) -> None:
    pytester.makepyfile(
        """
        from pytest_llmperf import Workload, llmperf

        @llmperf()
        def test_served(llmperf_bench, llm_engine):
            llmperf_bench(llm_engine, Workload(requests=1))
        """
    )
    with OracleServer() as oracle:
        result = pytester.runpytest("--llmperf", f"--llmperf-url={oracle.url}",
                                    f"--llmperf-tokenizer={tmp_path / 'nope'}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--llmperf-tokenizer *nope: no such file or directory*"])
    text = result.stdout.str()
    assert "Traceback" not in text and "pytest_llmperf/" not in text


def test_openai_engine_accepts_a_tokenizer_path(tmp_path: Path) -> None:
    d = save_dir(unigram(), tmp_path / "uni")
    with OracleServer() as oracle:
        engine = OpenAIEngine(oracle.url, tokenizer=str(d))
        try:
            assert engine.info()["tokenizer"] == "hf:uni"
            assert isinstance(engine.tokenizer, HFTokenizer)
        finally:
            engine.close()
