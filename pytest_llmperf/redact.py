"""Secrets out of every record: one redactor applied where server or command-line text enters.

Text from a server (error bodies, mid-stream errors, its log) and command lines (a managed
server's argv) can carry credentials: a gateway that echoes the request's headers into its
error body, ``--api-key KEY`` in ``--llmperf-server-args``. Everything the plugin records or
prints passes through here first, at the point where it enters a record (the engine's
``RequestError`` and ``EngineError`` messages, the managed server's command and log tail), so
no report, results file or baseline can carry a secret.

Two rules, both replacing the secret with ``***``:

- values known to be secret, wherever they appear: the API key (the value of
  ``$--llmperf-api-key-env``), the values of ``--llmperf-headers`` and of secret-looking
  server arguments;
- anything shaped like a credential: ``Authorization: <scheme> <value>``, ``Bearer <value>``,
  ``name=value`` / ``name: value`` / ``"name": "value"`` where the name says api key, token,
  secret or password (in text, JSON, query strings), such command-line flags (``--api-key X``,
  ``--api-key=X``, ``--hf-token X``), a password in a URL (``https://user:PASS@host``) and
  common token shapes (``sk-...``, ``hf_...``, ``ghp_...``, ``github_pat_...``, ``xox?-...``,
  ``AKIA...``).

Standard library only: loaded by the engines and the server fixtures.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence

SECRET_MARK = "***"
MIN_SECRET_LEN = 4  # shorter known values are not replaced (they would mangle the text)

# A name that says it holds a credential (not "max_tokens", "tokenizer", "api_key_env").
_NAME = r"[\w.-]*?(?:api[-_]?key|access[-_]?key|token|secret|password|passwd|credentials?)"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization / Proxy-Authorization headers, in any notation: keep the scheme word.
    (re.compile(r"(?i)((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
                r"(?:(bearer|basic|token|digest|apikey)\s+)?[^\s\"',;}\]]+"),
     r"\1\2 " + SECRET_MARK),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + SECRET_MARK),
    # Command-line flags: --api-key X, --api-key=X, --hf-token X.
    (re.compile(r"(?i)(?<![\w-])(--?" + _NAME + r")(?![\w-])(=|\s+)(?!-|\*\*\*)"
                r"(?:'[^']*'|\"[^\"]*\"|[^\s'\",;]+)"),
     r"\1\2" + SECRET_MARK),
    # name=value, name: value, "name": "value" (text, JSON, query strings, dict reprs).
    (re.compile(r"(?i)(?<![\w-])(" + _NAME + r")(?![\w-])([\"']?\s*[:=]\s*[\"']?)"
                r"(?![\"'\s])[^\s\"'&,;}\])]+"),
     r"\1\2" + SECRET_MARK),
    # A password in a URL.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@"), r"\1" + SECRET_MARK + "@"),
    # Common token shapes.
    (re.compile(r"\b(?:sk-(?:[A-Za-z0-9_-]{16,})|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}"
                r"|github_pat_\w{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}"
                r"|glpat-[A-Za-z0-9_-]{20,})"),
     SECRET_MARK),
)
# Flags (or NAME=... environment-style words) whose value is a secret, in an argv.
_SECRET_FLAG = re.compile(r"(?i)^--?" + _NAME + r"$")
_SECRET_ASSIGN = re.compile(r"(?i)^(--?" + _NAME + r"=)(.+)$")
# Header values that are never secret (everything else a user gives may be).
_PUBLIC_HEADERS = frozenset({"content-type", "accept", "user-agent", "connection"})


class Redactor:
    """``redactor(text)``: ``text`` with the known secrets and credential shapes as ``***``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        values: set[str] = set()
        for s in secrets:
            if s and len(s.strip()) >= MIN_SECRET_LEN:
                s = s.strip()
                values.add(s)
                values.add(urllib.parse.quote(s, safe=""))
                values.add(urllib.parse.quote_plus(s))
        # Longest first, so a value containing another is replaced whole.
        self.secrets: tuple[str, ...] = tuple(sorted(values, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, SECRET_MARK)
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text

    def argv(self, argv: Sequence[str]) -> list[str]:
        """A command line with secret flag values (``--api-key X``, ``--token=X``) and known
        secrets replaced, element by element."""
        out: list[str] = []
        hide_next = False
        for arg in argv:
            if hide_next and not arg.startswith("-"):
                out.append(SECRET_MARK)
                hide_next = False
                continue
            hide_next = bool(_SECRET_FLAG.match(arg))
            m = _SECRET_ASSIGN.match(arg)
            out.append(m.group(1) + SECRET_MARK if m else self(arg))
        return out

    def with_secrets(self, secrets: Iterable[str | None]) -> Redactor:
        return Redactor([*self.secrets, *secrets])


def argv_secrets(argv: Sequence[str]) -> list[str]:
    """The values of secret-looking flags in a command line (to redact them anywhere else,
    such as in the server's log)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        m = _SECRET_ASSIGN.match(arg)
        if m:
            out.append(m.group(2))
        elif _SECRET_FLAG.match(arg) and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            out.append(argv[i + 1])
    return out


def header_secrets(headers: Mapping[str, str]) -> list[str]:
    """The values of the headers a user gives (all but a few public ones), and the credential
    after an ``Authorization`` scheme word."""
    out: list[str] = []
    for name, value in headers.items():
        if name.lower() in _PUBLIC_HEADERS:
            continue
        out.append(value)
        scheme, _, credential = value.strip().partition(" ")
        if credential and scheme.lower() in ("bearer", "basic", "token", "apikey"):
            out.append(credential.strip())
    return out


_SECRET_ENV_NAME = re.compile(r"(?i)^" + _NAME + r"$")


def env_secrets(environ: Mapping[str, str]) -> list[str]:
    """The values of environment variables whose names say they hold a credential
    (``HF_TOKEN``, ``OPENAI_API_KEY``, ``AWS_SECRET_ACCESS_KEY``): a server inherits them and
    may print them in its log."""
    return [v for k, v in environ.items() if _SECRET_ENV_NAME.match(k)]


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with ``secrets`` and anything shaped like a credential replaced by ``***``."""
    return Redactor(secrets)(text)


def redact_argv(argv: Sequence[str], secrets: Iterable[str | None] = ()) -> list[str]:
    """A command line with its secret values replaced by ``***`` (see ``Redactor.argv``)."""
    return Redactor(secrets).argv(argv)
