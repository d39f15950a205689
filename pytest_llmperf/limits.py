"""The largest value of every count, size and rate a user gives a workload, a marker or a
setting, each with the reason it is the largest.

A value beyond its limit is refused where it enters, before anything runs or is allocated, in
one line naming the argument, the value and the limit: ``Workload.requests=10**30`` would
otherwise build its prompts and records for ever (issue 23). The limits are far above any
real benchmark; the reasons say what a larger value would cost. Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .values import show


@dataclass(frozen=True)
class Limit:
    maximum: int
    why: str

    def words(self) -> str:
        """``at most 10,000,000 (why)``."""
        return f"at most {self.maximum:,} ({self.why})"

    def problem(self, name: str, value: int | float) -> str | None:
        """None within the limit, else the one-line refusal naming ``name`` and ``value``."""
        if value <= self.maximum:
            return None
        return f"{name}={show(value)} is above the limit: {self.words()}"


# A workload (run/workload.py).
REQUESTS = Limit(10_000_000, "every request's prompt and record are held in memory from "
                 "before the run starts to its end")
CONCURRENCY = Limit(100_000, "requests in flight at once, each its own connection")
TOKENS = Limit(10_000_000, "tokens in one prompt or answer: longer than any model's context")
PROMPT_TOKENS = Limit(200_000_000, "the prompts are built before the run starts, about 50 "
                      "bytes a token: 10 GB")
TURNS = Limit(100_000, "turns of one session, each sending the whole conversation again")
SEED = Limit(2**64 - 1, "a 64-bit seed")
RATE = Limit(1_000_000, "requests per second")
DURATION_S = Limit(30 * 86_400, "seconds: 30 days")
THINK_TIME_S = Limit(86_400, "seconds between two turns: a day")
# Trace replay (run/traces.py): the file is read whole, and parsed into entries.
TRACE_BYTES = Limit(512 * 2**20, "bytes of a trace file, read whole: 512 MiB (Mooncake's "
                    "published traces are a few MB)")
# A marked test, the settings and the comparisons.
REPEATS = Limit(10_000, "runs of one test, every run kept in memory with its records")
PAIRS = Limit(10_000, "pairs of one comparison, each two runs kept in memory")
CAPACITY_RUNS = Limit(1_000, "runs of one capacity search, each a whole load test")
LOAD_WORKERS = Limit(1_024, "load-generator processes: more than any host has cores")
# Splitting a suite (shard.py): a COUNT is also read from results files (provenance.shard).
SHARDS = Limit(10_000, "shards of one suite; merging their results files lists the missing "
               "ones")
