"""Write the small sample traces of example_suites/traces/, deterministically (our own
making: no data copied from elsewhere).

- ``mooncake_sample.jsonl``: 48 requests in Mooncake's format with 32-token blocks: a few
  shared system prompts (2-4 blocks), conversations whose turns extend the earlier turn's
  blocks, and one-off requests; input lengths often end inside a block.
- ``plain_sample.jsonl``: the same arrivals and lengths without hash_ids.
- ``burstgpt_sample.csv``, ``azure_sample.csv``: 24 rows in BurstGPT's and the Azure LLM
  inference trace's CSV shapes (one failed request, 0 response tokens, each: skipped).

Run: ``python scripts/make_sample_traces.py [out_dir]``; the test
tests/unit/test_trace_samples.py checks the files in the repo are what this writes.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

BLOCK = 32
OUT = Path(__file__).resolve().parent.parent / "example_suites" / "traces"


def mooncake_entries(seed: int = 24, n: int = 48) -> list[dict[str, object]]:
    """Mooncake-shaped entries: hash ids allocated in order, as Mooncake's are."""
    rng = random.Random(seed)
    next_id = 0

    def fresh(k: int) -> list[int]:
        nonlocal next_id
        ids = list(range(next_id, next_id + k))
        next_id += k
        return ids

    systems = [fresh(k) for k in (2, 3, 4)]
    conversations: list[list[int]] = []
    out: list[dict[str, object]] = []
    t = 0.0
    for _ in range(n):
        t += rng.expovariate(1 / 150.0)  # ms between arrivals, 150 on average
        kind = rng.random()
        if kind < 0.35 and conversations:  # the next turn of a conversation
            c = rng.randrange(len(conversations))
            blocks = conversations[c] + fresh(rng.randint(1, 2))
            conversations[c] = blocks
        elif kind < 0.8:  # a system prompt and a question of its own
            blocks = rng.choice(systems) + fresh(rng.randint(1, 2))
            conversations.append(blocks)
        else:  # a one-off request
            blocks = fresh(rng.randint(1, 3))
        partial = rng.choice((0, 0, rng.randint(1, BLOCK - 1)))
        length = len(blocks) * BLOCK - (BLOCK - partial if partial else 0)
        out.append({"timestamp": int(t), "input_length": length,
                    "output_length": rng.randint(2, 8), "hash_ids": blocks})
    return out


def write_all(out_dir: Path = OUT) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = mooncake_entries()
    written = []
    mooncake = out_dir / "mooncake_sample.jsonl"
    mooncake.write_text("".join(json.dumps(e) + "\n" for e in entries))
    plain = out_dir / "plain_sample.jsonl"
    plain.write_text("".join(json.dumps({k: e[k] for k in ("timestamp", "input_length",
                                                          "output_length")}) + "\n"
                             for e in entries))
    written += [mooncake, plain]
    rng = random.Random(7)
    rows, t = [], 0.0
    for i in range(24):
        t += rng.expovariate(1 / 0.4)
        n_in, n_out = rng.randint(16, 120), (0 if i == 5 else rng.randint(2, 12))
        rows.append((t, n_in, n_out))
    burst = out_dir / "burstgpt_sample.csv"
    burst.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                     + "".join(f"{t:.3f},ChatGPT,{a},{b},{a + b},Conversation log\n"
                               for t, a, b in rows))
    start = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    azure = out_dir / "azure_sample.csv"
    azure.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"{(start + timedelta(seconds=t)).strftime('%Y-%m-%d %H:%M:%S.%f')}0,{a},{b}\n"
        for t, a, b in rows))
    written += [burst, azure]
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(path)
