"""Tokenizers for exact-length prompts against a server (``--llmperf-tokenizer``): a local
GGUF vocabulary (llama.cpp, vocabulary only) or the server's own tokenize endpoint."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..redact import Redactor, header_secrets
from .base import EngineError

EXCERPT = 300

# Plain English text whose tokens make a safe pool for random prompts on any tokenizer.
_WORD_TEXT = (
    "the of and to in is was that for on are with as be at by this had not but from or have an "
    "they which one you were her all she there would their we him been has when who will more no "
    "if out so said what up its about into than them can only other new some could time these "
    "two may then do first any my now such like our over man me even most made after also did "
    "many before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old "
    "year off come since against go came right used take three river stone light green water "
    "paper music house table window garden number system program question during without again"
)


def excerpt(text: str, n: int = EXCERPT) -> str:
    """``text`` on one line, cut to ``n`` characters (for error messages)."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


class GgufTokenizer:
    """A local tokenizer from a GGUF file (llama.cpp, vocabulary only: loads in milliseconds)."""

    local = True

    def __init__(self, path: str | Path) -> None:
        from .llama_cpp import LlamaCppTokenizer, import_llama_cpp

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


class ServerTokenizer:
    """The server's own tokenizer over HTTP (blocking: used only to build prompts, before a run).

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
                 ssl_ctx: ssl.SSLContext | bool, timeout_s: float = 60.0) -> None:
        self._url = urllib.parse.urlsplit(base_url)
        self._prefix = self._url.path.rstrip("/")
        if self._prefix.endswith("/v1"):
            self._prefix = self._prefix[:-3]
        self._model = model
        self._headers = {"Content-Type": "application/json", **headers}
        self._redact = Redactor(header_secrets(headers))
        self._ssl = ssl_ctx
        self._timeout = timeout_s
        self.failure: str | None = None  # why probe() found no usable endpoint
        self._conn: http.client.HTTPConnection | None = None
        self.flavour: tuple[str, str, str, str, str] | None = None
        self._words: list[int] | None = None
        self._special: list[int] | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            host = self._url.hostname or "127.0.0.1"
            if self._url.scheme == "https":
                ctx = self._ssl if isinstance(self._ssl, ssl.SSLContext) else (
                    ssl.create_default_context() if self._ssl else ssl._create_unverified_context())
                self._conn = http.client.HTTPSConnection(host, self._url.port, context=ctx,
                                                         timeout=self._timeout)
            else:
                self._conn = http.client.HTTPConnection(host, self._url.port,
                                                        timeout=self._timeout)
        return self._conn

    def _post(self, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        body = json.dumps(payload)
        for attempt in range(2):
            reused = self._conn is not None
            conn = self._connection()
            try:
                conn.request("POST", self._prefix + path, body=body, headers=self._headers)
                resp = conn.getresponse()
                data = resp.read()
            except TimeoutError:
                conn.close()
                self._conn = None
                raise EngineError(
                    f"the server's tokenizer at {path} did not answer within "
                    f"{self._timeout:g} s (--llmperf-request-timeout)") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._conn = None
                if attempt or not reused:
                    raise EngineError(self._redact(
                        f"the server's tokenizer at {path} failed: {exc}")) from None
                continue
            try:
                return resp.status, json.loads(data or b"null")
            except ValueError:
                return resp.status, None
        raise AssertionError("unreachable")

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
            ids = self.tokenize(_WORD_TEXT, add_special=False)
            self._words = sorted({i for i in ids if i not in special})
        return self._words

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
