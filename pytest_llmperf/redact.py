"""Secrets out of every record: one redactor applied where server or command-line text enters.

Text from a server (error bodies, mid-stream errors, its log) and command lines (a managed
server's argv) can carry credentials: a gateway that echoes the request's headers into its
error body, ``--api-key KEY`` in ``--llmperf-server-args``. Everything the plugin records or
prints passes through here first, at the point where it enters a record (the engine's
``RequestError`` and ``EngineError`` messages, the managed server's command and log tail), so
no report, results file or baseline can carry a secret.

Four rules, the first three replacing the secret with ``***``:

- values known to be secret, wherever they appear: the API key (the value of
  ``$--llmperf-api-key-env``), the values of ``--llmperf-headers`` and of secret-looking
  server arguments;
- anything shaped like a credential: ``Authorization: <scheme> <value>``, ``Bearer <value>``,
  ``name=value`` / ``name: value`` / ``"name": "value"`` where the name says api key, token,
  secret or password (in text, JSON, query strings), such command-line flags (``--api-key X``,
  ``--api-key=X``, ``--hf-token X``) and common token shapes (``sk-...``, ``hf_...``,
  ``ghp_...``, ``github_pat_...``, ``xox?-...``, ``AKIA...``);
- every URL in the text keeps its scheme, host, port and path but not its credentials: the
  password of its user information (a user name alone, often a token, too) and the value of
  every query parameter (``?key=``, ``?sig=``, ``?X-Amz-Signature=``, ...: names kept), see
  ``redact_url``;
- control characters are removed (``strip_controls``): a server's text cannot move the
  terminal's cursor, set its title or colour it, nor reorder what follows (bidi overrides).

``Redactor.argv`` also knows the flags whose value is structured: a header list
(``--llmperf-headers "Authorization: Bearer X"``: every header value but a few public ones)
and a command line (``--llmperf-server-cmd``, ``--llmperf-server-args``, compare's
``--served``: redacted as the command line it is, ``Redactor.command``).

Standard library only: loaded by the engines and the server fixtures.
"""

from __future__ import annotations

import json
import re
import shlex
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
# Authorization scheme words kept before the hidden credential ("Bearer ***").
_AUTH_SCHEMES = frozenset({"bearer", "basic", "token", "digest", "apikey"})
# Flags whose value is structured: a header list, a whole command line, or NAME=VALUE
# where NAME may be one of those (an ini override, an A/B override).
_SECRET = "secret"
_HEADERS_FLAG = "--llmperf-headers"
_COMMAND_FLAGS = frozenset({"--llmperf-server-cmd", "--llmperf-server-args", "--served"})
_VALUE_FLAGS = frozenset({_HEADERS_FLAG, *_COMMAND_FLAGS, "-o", "--override-ini",
                          "--llmperf-ab"})

# Terminal escape sequences, whole: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ST,
# or to the end of the line), DCS/SOS/PM/APC strings (ESC P/X/^/_ ... ST), the other
# two-byte escapes (ESC c, ESC ( B), and the 8-bit CSI/OSC forms.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b\][^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[PX^_][^\x1b\x9c\n]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]?"
    r"|[\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?")
# What is left: C0 controls but tab and newline, DEL, C1 controls, bidi embeddings,
# overrides and isolates (U+202A-202E, U+2066-2069).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# A URL in text: up to a space, a quote, an angle bracket or a backslash (escaped JSON).
_URL_IN_TEXT = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>`\\]+")
_URL_PARTS = re.compile(r"(?is)^([a-z][a-z0-9+.-]*://)([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#(.*))?$")
_TRAILING = ".,;:!?)]}"
# A word a command line shows unquoted (shlex's safe characters, {port}, and ***).
_PLAIN_WORD = re.compile(r"[\w@%+=:,./{}-]+")


def strip_controls(text: str) -> str:
    """``text`` without terminal escape sequences (whole) and control characters (C0 but tab
    and newline, DEL, C1) or bidi overrides: what a server says cannot drive the terminal
    or disguise what a report shows."""
    if text.isprintable():  # the common case: nothing to strip
        return text
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def redact_url(url: str) -> str:
    """``url`` with its credentials as ``***``: the password of its user information (a user
    name alone, as in ``https://TOKEN@host``, too) and the value of every query parameter,
    the names kept (``?key=***&sig=***``; a query word without a name is hidden whole),
    and ``name=value`` pairs in its fragment (``#access_token=***``). Scheme, host, port and
    path stay. Text that is not ``scheme://...`` is returned as given."""
    m = _URL_PARTS.match(url)
    if m is None:
        return url
    scheme, netloc, path, query, fragment = m.groups()
    user, at, host = netloc.rpartition("@")
    if at:
        name, colon, _ = user.partition(":")
        netloc = (f"{name}:{SECRET_MARK}@{host}" if colon and name
                  else f"{SECRET_MARK}@{host}")
    out = scheme + netloc + path
    if query is not None:
        out += "?" + _hide_pairs(query, bare=True)
    if fragment is not None:
        out += "#" + (_hide_pairs(fragment, bare=False) if "=" in fragment else fragment)
    return out


def _hide_pairs(text: str, *, bare: bool) -> str:
    """``a=1&b=2`` as ``a=***&b=***``; a part without ``=`` hidden when ``bare``."""
    parts = []
    for part in re.split(r"([&;])", text):
        name, eq, _ = part.partition("=")
        if eq:
            parts.append(f"{name}={SECRET_MARK}")
        elif bare and part and part not in ("&", ";"):
            parts.append(SECRET_MARK)
        else:
            parts.append(part)
    return "".join(parts)


def redact_urls(text: str) -> str:
    """Every ``scheme://...`` URL in ``text`` through ``redact_url`` (punctuation that ends a
    sentence after it kept)."""
    if "://" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        url = m.group(0)
        core = url.rstrip(_TRAILING)
        return redact_url(core) + url[len(core):]

    return _URL_IN_TEXT.sub(one, text)


def _hide_header_value(value: str) -> str:
    """A header's value as ``***``, an Authorization scheme word kept (``Bearer ***``)."""
    scheme, space, _ = value.strip().partition(" ")
    if space and scheme.lower() in _AUTH_SCHEMES:
        return f"{scheme} {SECRET_MARK}"
    return SECRET_MARK if value.strip() else value


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
        text = strip_controls(text)
        for s in self.secrets:
            if s in text:
                text = text.replace(s, SECRET_MARK)
        text = redact_urls(text)
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text

    def argv(self, argv: Sequence[str]) -> list[str]:
        """A command line with secret flag values (``--api-key X``, ``--token=X``), header
        lists (``--llmperf-headers``), inner command lines (``--llmperf-server-cmd``,
        ``--served``), URLs and known secrets replaced, element by element."""
        out: list[str] = []
        value_of = ""  # the flag whose value the next element is ("" when none)
        for arg in argv:
            arg = str(arg)
            if value_of and not (value_of == _SECRET and arg.startswith("-")):
                out.append(self._value(value_of, arg))
                value_of = ""
                continue
            name, eq, value = arg.partition("=")
            value_of = (_SECRET if _SECRET_FLAG.match(arg)
                        else arg if arg in _VALUE_FLAGS else "")
            if value_of:
                out.append(arg)
            elif _SECRET_ASSIGN.match(arg):
                out.append(name + eq + SECRET_MARK)
            elif eq and name in _VALUE_FLAGS and name != "-o":
                out.append(name + eq + self._value(name, value))
            else:
                out.append(self(arg))
        return out

    def _value(self, flag: str, value: str) -> str:
        """The value of ``flag`` (``_SECRET``: a secret flag's), redacted as what it is."""
        if flag == _SECRET:
            return SECRET_MARK
        if flag == _HEADERS_FLAG:
            return self.headers(value)
        if flag in _COMMAND_FLAGS:
            return self.command(value)
        # -o llmperf_NAME=VALUE, --llmperf-ab NAME=VALUE
        name, eq, inner = value.partition("=")
        key = name.strip().removeprefix("llmperf_")
        if eq and key == "headers":
            return name + eq + self.headers(inner)
        if eq and key in ("server_cmd", "server_args"):
            return name + eq + self.command(inner)
        return self(value)

    def headers(self, spec: str) -> str:
        """A header list (``--llmperf-headers``: ``Name: value; Other: value``, one per line,
        or a JSON object) with every value but a few public ones (``Content-Type``,
        ``Accept``, ...) as ``***`` (``Authorization: Bearer ***``)."""
        text = spec.strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except (ValueError, RecursionError):
                return SECRET_MARK
            if not isinstance(data, dict):
                return SECRET_MARK
            return json.dumps({str(k): str(v) if str(k).lower() in _PUBLIC_HEADERS
                               else _hide_header_value(str(v)) for k, v in data.items()})
        parts = []
        for part in re.split(r"([;\n])", spec):
            name, colon, value = part.partition(":")
            if part in (";", "\n") or not part.strip():
                parts.append(part)
            elif not colon:
                parts.append(SECRET_MARK)
            elif name.strip().lower() in _PUBLIC_HEADERS:
                parts.append(self(part))
            else:
                parts.append(f"{name}: {_hide_header_value(value)}")
        return "".join(parts)

    def command(self, cmd: str) -> str:
        """A command line given as one string (``--served "python serve.py --api-key X"``):
        split as a shell would, redacted as an argv (``argv``), joined again; as text when
        it cannot be split. Unchanged (but for the text rules) when nothing in it is secret."""
        try:
            words = shlex.split(cmd)
        except ValueError:
            return self(cmd)
        hidden = self.argv(words)
        if hidden == words:
            return self(cmd)
        return " ".join(w if _PLAIN_WORD.fullmatch(w.replace(SECRET_MARK, "_"))
                        else shlex.quote(w) for w in hidden)

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


def redact_command(cmd: str, secrets: Iterable[str | None] = ()) -> str:
    """A command line given as one string with its secret values replaced by ``***`` (see
    ``Redactor.command``)."""
    return Redactor(secrets).command(cmd)
