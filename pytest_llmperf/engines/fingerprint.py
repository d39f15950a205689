"""The tokenizer and chat template, fingerprinted (issue 25, "what moved with it").

An engine's ``info()`` carries ``tokenizer_hash`` (its vocabulary: every token's text, in id
order, with the added tokens) and ``chat_template_hash`` (the chat template's text) where it
knows them, so the attribution block of a regression says when either changed ("engine:
chat_template_hash: baseline 'sha256:...', now 'sha256:...'"). They are left out of the
baseline profile (``store.profile.ATTRIBUTION_ONLY_ENGINE_KEYS``): a tokenizer or template
change shows in the prompts digest and in the attribution, and adding the keys does not orphan
the baselines stored before them. Pure functions, standard library only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

KEYS = ("tokenizer_hash", "chat_template_hash")
DIGITS = 16  # hex digits kept: short enough to read, far beyond any accidental collision


def short_sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()[:DIGITS]


def vocabulary_hash(pieces: Iterable[bytes | str]) -> str:
    """The hash of a vocabulary given as every token's text (bytes or str), in id order."""
    h = hashlib.sha256()
    for piece in pieces:
        raw = piece.encode("utf-8", "surrogatepass") if isinstance(piece, str) else piece
        h.update(len(raw).to_bytes(4, "little"))  # length-prefixed: no separator ambiguity
        h.update(raw)
    return "sha256:" + h.hexdigest()[:DIGITS]


def vocab_mapping_hash(vocab: Mapping[str, int]) -> str:
    """The hash of a token -> id mapping (Hugging Face ``get_vocab()``): its pieces in id
    order (ties by text)."""
    return vocabulary_hash(t for t, _ in sorted(vocab.items(), key=lambda kv: (kv[1], kv[0])))


def template_hash(template: Any) -> str | None:
    """The hash of a chat template: its text (a mapping of named templates, as Hugging Face
    allows, canonical JSON); None when there is none."""
    if template is None or template == "" or template == {}:
        return None
    if isinstance(template, bytes):
        template = template.decode("utf-8", "replace")
    if not isinstance(template, str):
        template = json.dumps(template, sort_keys=True, default=str)
    return short_sha256(template.encode("utf-8", "surrogatepass"))


def of(tokenizer: Any) -> dict[str, str]:
    """A tokenizer's ``fingerprint()`` ({} when it has none or it fails: a fingerprint never
    stops a run)."""
    fingerprint = getattr(tokenizer, "fingerprint", None)
    if not callable(fingerprint):
        return {}
    try:
        found = fingerprint()
    except Exception:
        return {}
    if not isinstance(found, Mapping):
        return {}
    return {k: v for k in KEYS if isinstance(v := found.get(k), str) and v}
