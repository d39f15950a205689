"""Tokenizers for exact-length prompts (``--llmperf-tokenizer``): a local GGUF vocabulary
(llama.cpp, vocabulary only), a local Hugging Face tokenizer (a directory or a
``tokenizer.json``, through ``transformers`` or the lighter ``tokenizers``: for any
OpenAI-compatible server without a tokenize endpoint, such as trtllm-serve, TGI or a hosted
API), or the server's own tokenize endpoint. ``local_tokenizer`` picks the local kind from the
path; ``HFTokenizer`` is also the in-process vLLM and TensorRT-LLM engines' tokenizer."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..redact import Redactor, header_secrets
from . import fingerprint
from .base import EngineError
from .blocking_http import Connection, FetchError
from .llama_cpp import LlamaCppTokenizer, import_llama_cpp
from .vocabulary import PLAIN_WORDS, token_pool

EXCERPT = 300
HF_INSTALL = "pip install 'pytest-llmperf[hf]' (or pip install tokenizers)"

def excerpt(text: str, n: int = EXCERPT) -> str:
    """``text`` on one line, cut to ``n`` characters (for error messages)."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


class GgufTokenizer:
    """A local tokenizer from a GGUF file (llama.cpp, vocabulary only: loads in milliseconds)."""

    local = True

    def __init__(self, path: str | Path) -> None:
        lc = import_llama_cpp()
        path = Path(path).expanduser()
        if not path.is_file():
            raise EngineError(f"tokenizer file not found: {path} (--llmperf-tokenizer)")
        try:
            self._llm = lc.Llama(model_path=str(path), vocab_only=True, verbose=False)
        except Exception as exc:
            raise EngineError(f"llama.cpp could not load the vocabulary of {path}: {exc}") from None
        self._inner = LlamaCppTokenizer(self._llm, lc)
        vocab = self._llm._model.vocab
        n = lc.llama_vocab_n_tokens(vocab)
        self.eog_ids: list[int] = [t for t in range(n) if lc.llama_vocab_is_eog(vocab, t)]
        self.path = path

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self._inner.tokenize(text, add_special)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._inner.detokenize(ids)

    def word_token_ids(self) -> Sequence[int]:
        return self._inner.word_token_ids()

    def fingerprint(self) -> dict[str, str]:
        """The vocabulary's and chat template's hashes (``LlamaCppTokenizer.fingerprint``)."""
        return self._inner.fingerprint()


class HFTokenizer:
    """A Hugging Face tokenizer behind our Tokenizer protocol: a ``transformers`` tokenizer
    (what vLLM and TensorRT-LLM use) or a bare ``tokenizers.Tokenizer`` (a tokenizer.json).

    Prompts can be built from any vocabulary (WordLevel, byte-level BPE, SentencePiece...):
    ``word_token_ids`` keeps the ids that survive a round trip through text
    (``run.workload.token_pool``), not pieces recognised by their spelling."""

    local = True
    # End-of-generation ids are not sent as a logit bias: the server's ignore_eos (or
    # min_tokens) keeps the answer going, as with the server's own tokenizer.
    eog_ids: list[int] = []  # noqa: RUF012 - never mutated

    def __init__(self, tokenizer: Any, label: str | None = None) -> None:
        self._tok = tokenizer
        # tokenizers.Tokenizer.encode returns an Encoding, transformers' encode the ids.
        self._bare = getattr(type(tokenizer), "__module__", "").split(".")[0] == "tokenizers"
        self.label = label or type(tokenizer).__name__
        self._words: list[int] | None = None
        self._fingerprint: dict[str, str] | None = None

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        encoded = self._tok.encode(text, add_special_tokens=add_special)
        return [int(i) for i in (encoded.ids if self._bare else encoded)]

    def detokenize(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode([int(i) for i in ids], skip_special_tokens=True))

    def special_ids(self) -> set[int]:
        """Ids of special tokens (BOS, EOS, padding, ...): never drawn into a prompt."""
        if self._bare:
            return {int(i) for i, t in self._tok.get_added_tokens_decoder().items()
                    if getattr(t, "special", True)}
        return {int(i) for i in getattr(self._tok, "all_special_ids", None) or ()}

    def word_token_ids(self) -> Sequence[int]:
        if self._words is None:
            special = self.special_ids()
            vocab = self._tok.get_vocab()
            self._words = token_pool(self, sorted({int(i) for i in vocab.values()} - special))
        return self._words

    def fingerprint(self) -> dict[str, str]:
        """``tokenizer_hash`` (the vocabulary, added tokens included, in id order) and
        ``chat_template_hash`` (a ``transformers`` tokenizer's ``chat_template``; a bare
        tokenizer.json has none), made once (issue 25; ``engines.fingerprint``)."""
        if self._fingerprint is None:
            vocab = (self._tok.get_vocab(with_added_tokens=True) if self._bare
                     else self._tok.get_vocab())
            found = {"tokenizer_hash": fingerprint.vocab_mapping_hash(
                {str(k): int(v) for k, v in vocab.items()})}
            digest = fingerprint.template_hash(getattr(self._tok, "chat_template", None))
            if digest:
                found["chat_template_hash"] = digest
            self._fingerprint = found
        return dict(self._fingerprint)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return excerpt(text[0] if text else type(exc).__name__, 200)


def load_hf_tokenizer(path: str | Path) -> HFTokenizer:
    """A local Hugging Face tokenizer: a directory (``tokenizer_config.json`` through
    ``transformers`` when it is installed, as servers load it; else its ``tokenizer.json``
    through ``tokenizers``) or a ``tokenizer.json`` file. Nothing is fetched from a hub.
    EngineError (one line) for a missing or unreadable tokenizer or a missing library."""
    import importlib.util

    path = Path(path).expanduser()
    file = path
    if path.is_dir():
        file = path / "tokenizer.json"
        has_config = (path / "tokenizer_config.json").is_file()
        if not file.is_file() and not has_config:
            raise EngineError(
                f"--llmperf-tokenizer {path}: the directory has no tokenizer.json or "
                "tokenizer_config.json (not a Hugging Face tokenizer directory)")
        if has_config and importlib.util.find_spec("transformers") is not None:
            try:
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            except Exception as exc:
                if not file.is_file():
                    raise EngineError(
                        f"transformers could not load the tokenizer in {path}: "
                        f"{_first_line(exc)}") from None
            else:
                return HFTokenizer(tok, f"hf:{path.name}")
        if not file.is_file():
            raise EngineError(
                f"--llmperf-tokenizer {path}: the directory has tokenizer_config.json but no "
                "tokenizer.json; loading it needs transformers: pip install transformers")
    elif not path.is_file():
        raise EngineError(f"--llmperf-tokenizer {path}: no such file or directory")
    try:
        import tokenizers
    except ImportError:
        raise EngineError(
            f"reading the Hugging Face tokenizer {file} needs the tokenizers package: "
            f"{HF_INSTALL}") from None
    try:
        bare = tokenizers.Tokenizer.from_file(str(file))
    except Exception as exc:  # OSError, or the library's own error for a malformed file
        raise EngineError(
            f"could not read the Hugging Face tokenizer {file}: {_first_line(exc)}") from None
    return HFTokenizer(bare, f"hf:{path.name}")


def local_tokenizer(spec: str | Path) -> GgufTokenizer | HFTokenizer:
    """The local tokenizer ``--llmperf-tokenizer PATH`` names: a ``.gguf`` file (llama.cpp
    vocabulary), or a Hugging Face tokenizer directory or ``tokenizer.json``."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise EngineError(
            f"--llmperf-tokenizer {spec}: no such file or directory; give a .gguf file, a "
            "Hugging Face tokenizer directory or its tokenizer.json, or auto, server or none")
    if path.is_dir() or path.suffix.lower() == ".json":
        return load_hf_tokenizer(path)
    if path.suffix.lower() == ".gguf":
        return GgufTokenizer(path)
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise EngineError(
            f"--llmperf-tokenizer {path}: cannot read it ({exc.strerror or exc})") from None
    if head.startswith(b"GGUF"):
        return GgufTokenizer(path)
    if head.lstrip()[:1] == b"{":
        return load_hf_tokenizer(path)
    raise EngineError(
        f"--llmperf-tokenizer {path} is neither a GGUF file nor a Hugging Face tokenizer "
        "(a directory or tokenizer.json)")


class ServerTokenizer:
    """The server's own tokenizer over HTTP (blocking; prompts are built with it before a run,
    and multi-turn sessions call it from their threads during one: one call at a time).

    Speaks vLLM's ``/tokenize`` {"prompt"}, llama.cpp llama-server's ``/tokenize`` {"content"}
    and llama-cpp-python's ``/extras/tokenize`` {"input"}, whichever the server answers.

    Every call waits at most ``timeout_s`` (the engine passes ``--llmperf-request-timeout``)
    and is never retried after a timeout (only a kept-alive connection the server had closed is
    retried once), so a tokenize endpoint that never answers costs one timeout. When ``probe()``
    finds no usable endpoint, ``failure`` says why. Error messages are redacted.
    """

    local = False
    eog_ids: list[int] = []  # noqa: RUF012 - unknown over HTTP

    FLAVOURS: tuple[tuple[str, str, str, str, str], ...] = (
        # name, tokenize path, text field, detokenize path, detokenized text field
        ("vllm", "/tokenize", "prompt", "/detokenize", "prompt"),
        ("llama-server", "/tokenize", "content", "/detokenize", "content"),
        ("llama-cpp-python", "/extras/tokenize", "input", "/extras/detokenize", "text"),
    )

    def __init__(self, base_url: str, model: str | None, headers: Mapping[str, str],
                 ssl_ctx: ssl.SSLContext | bool, timeout_s: float = 60.0, *,
                 target: Callable[[str], str] | None = None) -> None:
        u = urllib.parse.urlsplit(base_url)
        prefix = u.path.rstrip("/")
        if prefix.endswith("/v1"):
            prefix = prefix[:-3]
        query = f"?{u.query}" if u.query else ""
        # The request target of a path: the engine's ``request_target`` (the server's root
        # path in front, the --llmperf-url query after), else the same from base_url.
        self._target: Callable[[str], str] = target or (lambda path: prefix + path + query)
        self._model = model
        self._headers = {"Content-Type": "application/json", **headers}
        self._redact = Redactor(header_secrets(headers))
        self._timeout = timeout_s
        self.failure: str | None = None  # why probe() found no usable endpoint
        self._conn = Connection(base_url, ssl_ctx)  # kept alive, one request at a time
        self._lock = threading.Lock()  # one request at a time on the one connection
        self.flavour: tuple[str, str, str, str, str] | None = None
        self._words: list[int] | None = None
        self._special: list[int] | None = None

    def _post(self, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        """(status, JSON body or None) within the request timeout in all; EngineError when
        there is no answer."""
        body = json.dumps(payload).encode()
        with self._lock:
            try:
                reply = self._conn.request("POST", self._target(path), headers=self._headers,
                                           body=body, timeout_s=self._timeout)
            except FetchError as exc:
                if exc.kind == "timeout":
                    raise EngineError(
                        f"the server's tokenizer at {path} did not answer within "
                        f"{self._timeout:g} s (--llmperf-request-timeout)") from None
                raise EngineError(self._redact(
                    f"the server's tokenizer at {path} failed: {exc}")) from None
        try:
            return reply.status, json.loads(reply.body or b"null")
        except (ValueError, RecursionError):
            return reply.status, None

    def probe(self) -> bool:
        """Find which tokenize endpoint the server offers; False (and ``failure``) when none."""
        statuses: list[str] = []
        for flavour in self.FLAVOURS:
            _, path, field, _, _ = flavour
            payload: dict[str, Any] = {field: "hello world"}
            if self._model:
                payload["model"] = self._model
            try:
                status, data = self._post(path, payload)
            except EngineError as exc:
                self.failure = str(exc)
                return False
            statuses.append(f"{path} HTTP {status}")
            # Non-empty: llama-server answers 200 with no tokens to a field it does not know.
            tokens = data.get("tokens") if isinstance(data, dict) else None
            if status == 200 and isinstance(tokens, list) and tokens:
                self.flavour = flavour
                return True
        self.failure = "no tokenize endpoint: " + ", ".join(statuses)
        return False

    def _raw_tokenize(self, text: str, add_special: bool) -> list[int]:
        assert self.flavour is not None
        name, path, field, _, _ = self.flavour
        payload: dict[str, Any] = {field: text}
        if self._model:
            payload["model"] = self._model
        if name == "vllm":
            payload["add_special_tokens"] = add_special
        elif name == "llama-server":
            payload["add_special"] = add_special
        status, data = self._post(path, payload)
        if status != 200 or not isinstance(data, dict):
            raise EngineError(self._redact(
                f"the server's tokenizer answered HTTP {status}: {excerpt(str(data))}"))
        ids = [int(t["id"]) if isinstance(t, dict) else int(t) for t in data["tokens"]]
        if name == "llama-cpp-python" and not add_special:  # it always adds BOS
            special = self.special_prefix()
            if special and ids[: len(special)] == special:
                ids = ids[len(special):]
        return ids

    def special_prefix(self) -> list[int]:
        if self._special is None:
            self._special = self._raw_tokenize("", True)
        return self._special

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self._raw_tokenize(text, add_special)

    def detokenize(self, ids: Sequence[int]) -> str:
        assert self.flavour is not None
        _, _, _, path, field = self.flavour
        payload: dict[str, Any] = {"tokens": [int(i) for i in ids]}
        if self._model:
            payload["model"] = self._model
        status, data = self._post(path, payload)
        if status != 200 or not isinstance(data, dict):
            raise EngineError(self._redact(
                f"the server's detokenizer answered HTTP {status}: {excerpt(str(data))}"))
        return str(data.get(field, ""))

    def word_token_ids(self) -> Sequence[int]:
        if self._words is None:
            special = set(self.special_prefix())
            ids = self.tokenize(" ".join(PLAIN_WORDS), add_special=False)
            self._words = sorted({i for i in ids if i not in special})
        return self._words

    def close(self) -> None:
        self._conn.close()
