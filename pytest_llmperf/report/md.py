"""Text from outside (commit subjects, node ids, profile ids, labels, server and file text) put
into Markdown safely: the one place every Markdown writer (the session summary, ``llmperf
compare``'s, the nightly summary and issues) escapes what it did not write itself.

Who can put text there: anyone who can commit (subjects), name a test (node ids), write the
baseline store or a results file. On GitHub the Markdown becomes an issue, a comment or a step
summary, so such text must not become HTML (``<img src=x onerror=...>``), a link
(``[x](javascript:...)``), a heading, a table cell break, a mention that notifies
(``@someone``), or leave a code span or block it was put in (backticks).

- ``md_text(s)``: inline text. Every Markdown punctuation mark that could start markup
  (``\\ ` * _ [ ] ( ) # | ! ~``; ``_`` but between two letters or digits, where it cannot) is
  backslash-escaped, ``<``, ``>`` and ``&`` become entities,
  ``@`` gets a zero-width joiner after it (shown as it was, notifies no one), and line breaks
  and other control characters become spaces.
- ``md_code(s)``: an inline code span whose fence is longer than any run of backticks in
  ``s`` (so ``s`` cannot close it); text in a code span is literal (no HTML, no link, no
  mention) and keeps its characters for copying, less line breaks and control characters.
- ``md_block(s)``: a fenced code block, fenced the same way; keeps line breaks.
- ``md_cell(s)``: Markdown already made safe, for a table cell: one line, and every ``|`` not
  already escaped is escaped (GitHub splits cells at an unescaped ``|``, even in code).
- ``one_line(s)``: plain text on one line (titles, terminal lines): control characters and
  line breaks become spaces, runs of spaces one; ``no_mention`` breaks ``@`` mentions.

Standard library only; no project imports.
"""

from __future__ import annotations

import re

ZWJ = "\u200d"  # after "@": the text reads the same, GitHub links and notifies no one
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")
_PUNCT = re.compile(r"([\\`*\[\]()#|!~])")
# "_" between two letters or digits can neither open nor close emphasis (CommonMark's
# flanking rules): snake_case names stay as they are; every other "_" is escaped.
_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
_BACKTICKS = re.compile(r"`+")
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def one_line(text: object) -> str:
    """``text`` on one line: control characters and line breaks as spaces, each run of
    whitespace one space, no leading or trailing space."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", str(text))).strip()


def no_mention(text: str) -> str:
    """``text`` with a zero-width joiner after every ``@``, so no mention notifies anyone."""
    return text.replace("@", "@" + ZWJ)


def md_text(text: object) -> str:
    """``text`` as inline Markdown that renders as that text and nothing else (see the module
    docstring)."""
    s = one_line(text)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _UNDERSCORE.sub(r"\\_", _PUNCT.sub(r"\\\1", s))
    return no_mention(s)


def _fence(text: str, least: int) -> str:
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    return "`" * max(least, longest + 1)


def md_code(text: object) -> str:
    """``text`` as an inline code span that ``text`` cannot close; "" for empty text."""
    s = one_line(text)
    if not s:
        return ""
    fence = _fence(s, 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def md_block(text: object, info: str = "") -> str:
    """``text`` as a fenced code block (lines kept, other control characters as spaces) that
    no line of ``text`` can close."""
    lines = [_CONTROL.sub(" ", line) for line in str(text).splitlines()]
    body = "\n".join(lines)
    fence = _fence(body, 3)
    return f"{fence}{one_line(info)}\n{body}\n{fence}"


def md_cell(markdown: str) -> str:
    """Safe Markdown (``md_text``, ``md_code`` and our own words) as one table cell: one line,
    and no ``|`` that could end the cell."""
    return _UNESCAPED_PIPE.sub(r"\\|", one_line(markdown))
