"""Which token ids are safe to draw random prompt text from, for any tokenizer: ids that
survive a round trip through the tokenizer in running text, found from plain English words
first and from the vocabulary after. The workload's synthetic prompts and the tokenizers of
served engines both draw from here."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from .base import TextTokenizer

# Plain English words whose tokens make a safe pool for random prompts on any tokenizer.
PLAIN_WORDS: tuple[str, ...] = tuple(
    "the of and to in is was that for on are with as be at by this had not but from or have an "
    "they which one you were her all she there would their we him been has when who will more no "
    "if out so said what up its about into than them can only other new some could time these "
    "two may then do first any my now such like our over man me even most made after also did "
    "many before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old "
    "year off come since against go came right used take three river stone light green water "
    "paper music house table window garden number system program question during without again"
    .split()
)
# Fewer ids than this and the prompts would repeat themselves: look further (token_pool).
MIN_POOL = 16
# How many vocabulary ids token_pool tries at most before giving up on a large vocabulary.
_MAX_SCAN = 20_000


def round_trip_ids(tok: TextTokenizer, candidates: Iterable[int], *, whole_words: bool = True,
                   limit: int | None = None) -> list[int]:
    """The candidates that survive a round trip in running text: ``t`` three times over,
    detokenized, tokenizes back to exactly ``[t, t, t]``; with ``whole_words``, the text must
    also be three equal whitespace-separated words (so any sequence of such ids splits at its
    spaces and keeps its length: no merges across ids). Order kept, duplicates dropped, at
    most ``limit`` ids."""
    out: list[int] = []
    seen: set[int] = set()
    for t in candidates:
        t = int(t)
        if t in seen:
            continue
        seen.add(t)
        text = tok.detokenize([t, t, t])
        if not text.strip() or not text.isprintable():
            continue
        if whole_words:
            parts = text.split()
            if len(parts) != 3 or len(set(parts)) != 1:
                continue
        if tok.tokenize(text, add_special=False) == [t, t, t]:
            out.append(t)
            if limit is not None and len(out) >= limit:
                break
    return out


def token_pool(tok: TextTokenizer, vocab_ids: Iterable[int] = ()) -> list[int]:
    """Ids to draw random prompt text from, for any tokenizer (WordLevel, byte-level BPE,
    SentencePiece, character-level...), each checked by ``round_trip_ids``:

    1. plain English words (``PLAIN_WORDS``) as the tokenizer splits them in running text;
    2. fewer than ``MIN_POOL``: also whole words among ``vocab_ids`` (the caller's
       non-special vocabulary ids, when it has a vocabulary);
    3. still fewer: any of those ids that round-trips by itself (not a whole word).

    Sorted; empty when nothing survives (the caller says the tokenizer cannot be used)."""
    english = tok.tokenize(" ".join(PLAIN_WORDS), add_special=False)
    pool = round_trip_ids(tok, english)
    if len(pool) < MIN_POOL:
        vocab = list(itertools.islice(vocab_ids, _MAX_SCAN))
        have = set(pool)
        pool += round_trip_ids(tok, (t for t in vocab if t not in have), limit=512)
        if len(pool) < MIN_POOL:
            have = set(pool)
            pool += round_trip_ids(tok, (t for t in vocab if t not in have),
                                   whole_words=False, limit=512)
    return sorted(set(pool))
