"""Trace replay, part 2: the prompts of a trace, with its prefix structure.

Every replayed entry (run/traces.py) becomes one prompt of exactly ``input_length`` tokens
(special tokens included) asking for ``output_length`` tokens. A Mooncake entry's
``hash_ids`` become token blocks of ``trace_block_size`` tokens: block ``j`` covers the
prompt's positions ``[j * B, (j + 1) * B)`` (the first block holds the BOS the tokenizer adds,
the last may be partial), and its tokens are a pure function of ``(seed, hash_id)``
(``BlockMaker``), so two requests share exactly the blocks their ``hash_ids`` share: a
server's prefix cache (vLLM's blocks chain their parents' hashes, as Mooncake's ids do) sees
the trace's reuse. Tokens past the entry's hash blocks, and the prompts of traces without
``hash_ids``, are random words drawn for that request alone.

A block starts with its hash id written in base P (P: the size of the word pool) on a
seeded permutation of the pool, lowest digit first: blocks of different ids at the same
place differ in their first token when the ids differ modulo P (Gemma's pool has ~80,000
words), and always within their first few tokens, so a shared prefix ends at the block
boundary, to the token where the pool is large. Engines that tokenize text (every HTTP
server) must see the same tokens: the text is the detokenized ids, checked to tokenize back
to them exactly (with or without its leading space, whichever does).

Warm-up requests have the lengths of the trace's first entries (cycled) and words of their
own, no blocks: they warm the engine without touching the trace's cache structure.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..engines.base import Prompt, Tokenizer
from ..engines.vocabulary import round_trip_ids, token_pool
from .traces import TraceEntry, trace_entries
from .workload_error import WorkloadError

if TYPE_CHECKING:
    from .workload import Workload

_BLOCK_STREAM = 0x7A5E  # rng stream of block contents: [seed, _BLOCK_STREAM, hash_id]
_TAIL_STREAM = 0x7A11  # of a request's own words: [seed, _TAIL_STREAM, request index]
_PERM_STREAM = 0x9E37  # of the pool's permutation for the hash id digits: [seed, it]
_CHUNK = 2048  # pool ids checked together (one text, well inside a server's context)
_CACHED_BLOCKS = 4096  # block contents kept for reuse (a trace has ~10^5 distinct blocks)


def word_pool(tok: Tokenizer) -> np.ndarray:
    """The ids prompts are drawn from (as run/workload.py's synthetic prompts draw them),
    kept only where they come back from text: all of them at once when they do (one call
    each way, ``_CHUNK`` at a time), else those that survive a round trip each
    (``round_trip_ids``; a server's
    tokenizer may offer ids, such as its unknown-word id, that its text does not give back)."""
    offered = list(dict.fromkeys(int(t) for t in tok.word_token_ids())) or token_pool(tok)
    words: list[int] = []
    for start in range(0, len(offered), _CHUNK):
        chunk = offered[start:start + _CHUNK]
        words += chunk if _exact(tok, chunk) else round_trip_ids(tok, chunk)
    if not words:
        raise WorkloadError(
            "the tokenizer offers no tokens that survive a round trip through text, so a "
            "trace's prompts cannot be built")
    return np.asarray(words, dtype=np.int64)


def _exact(tok: Tokenizer, ids: Sequence[int]) -> bool:
    try:
        return text_of(tok, ids)[1]
    except WorkloadError:
        return False


class BlockMaker:
    """Block contents as a pure function of ``(seed, hash_id)``: ``block(h)`` is ``size``
    token ids, its first tokens ``h`` in base len(pool) (lowest digit first, on a seeded
    permutation of the pool), the rest seeded random words."""

    def __init__(self, pool: np.ndarray, seed: int, size: int) -> None:
        self.pool = pool
        self.seed = seed
        self.size = size
        self._perm = np.random.default_rng([seed, _PERM_STREAM]).permutation(pool)
        self._blocks: OrderedDict[int, list[int]] = OrderedDict()  # the latest used

    def digits(self, h: int) -> list[int]:
        p = len(self._perm)
        out = [int(self._perm[h % p])]
        h //= p
        while h:
            out.append(int(self._perm[h % p]))
            h //= p
        return out

    def block(self, h: int) -> list[int]:
        got = self._blocks.get(h)
        if got is not None:
            self._blocks.move_to_end(h)
            return got
        head = self.digits(h)[: self.size]
        rng = np.random.default_rng([self.seed, _BLOCK_STREAM, h])
        got = head + [int(t) for t in rng.choice(self.pool, size=self.size - len(head))]
        self._blocks[h] = got
        if len(self._blocks) > _CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return got


def content_ids(entry: TraceEntry, index: int, maker: BlockMaker, n_special: int,
                hashed: bool = True) -> list[int]:
    """The ids after the special tokens of the prompt of ``entry`` (request ``index`` of
    the run): its hash blocks (``hashed``), then words of its own up to ``input_length``."""
    size, total = maker.size, entry.input_length
    ids: list[int] = []
    if hashed and entry.hash_ids:
        for j, h in enumerate(entry.hash_ids[: math.ceil(total / size)]):
            start, end = j * size, min((j + 1) * size, total)
            ids.extend(maker.block(h)[: end - start - (n_special if j == 0 else 0)])
    need = total - n_special - len(ids)
    if need > 0:
        rng = np.random.default_rng([maker.seed, _TAIL_STREAM, index])
        ids.extend(int(t) for t in rng.choice(maker.pool, size=need))
    return ids


def text_of(tok: Tokenizer, ids: Sequence[int]) -> tuple[str, bool]:
    """(text, exact): the detokenized ``ids``, with its leading space or without, whichever
    tokenizes back to exactly ``ids`` (exact True); else the one of the same length (exact
    False: the blocks may be off by a token at their edges); else a WorkloadError."""
    text = tok.detokenize(list(ids))
    candidates = [text, text.lstrip()] if text != text.lstrip() else [text]
    same_length: str | None = None
    for candidate in candidates:
        back = tok.tokenize(candidate, add_special=False)
        if back == list(ids):
            return candidate, True
        if same_length is None and len(back) == len(ids):
            same_length = candidate
    if same_length is not None:
        return same_length, False
    raise WorkloadError(f"could not build a text of exactly {len(ids)} tokens from the "
                        "trace's blocks: this tokenizer does not give its words back")


def trace_prompts(tok: Tokenizer | None, workload: Workload) -> list[Prompt]:
    """The warm-up prompts, then one prompt per replayed entry (module docstring)."""
    if tok is None:
        raise WorkloadError("a trace's prompts of exact token lengths need the engine's "
                            "tokenizer, and this engine has none")
    assert workload.trace is not None
    entries = trace_entries(workload)
    special = tok.tokenize("", add_special=True)
    n_special = len(special)
    maker = BlockMaker(word_pool(tok), workload.seed, workload.trace_block_size)
    prompts: list[Prompt] = []
    jobs = [(entries[i % len(entries)], i, False) for i in range(workload.warmup)]
    jobs += [(e, workload.warmup + k, True) for k, e in enumerate(entries)]
    for entry, index, hashed in jobs:
        if entry.input_length <= n_special:
            raise WorkloadError(
                f"{workload.trace}:{entry.line}: field input_length={entry.input_length} "
                f"leaves no room for text after the {n_special} special token(s) the "
                "tokenizer adds")
        ids = content_ids(entry, index, maker, n_special, hashed)
        text, _ = text_of(tok, ids)
        prompts.append(Prompt(text, tuple(special + ids), entry.input_length,
                              entry.output_length))
    return prompts
