"""``--llmperf-ab KEY=VALUE`` (a config change as a paired A/B in one flag) and
``llmperf compare --served`` (BASE's and HEAD's servers side by side, interleaved by request).

The known-schedule oracle servers give exact, fast checks (a known slowdown has the right
sign and size; an A/A passes); the embedded llama.cpp engine runs the real thing (Gemma 3
270M: an A/A of threads=2 passes; the packaged Gemma against the tiny random-weight model is
a certain slowdown whatever the load; threads 2 -> 1 is a regression of tpot_p50 where a
second core is free, checked only then: with other processes on the 2 cores a process gets
about one core's worth of time whatever its thread count, and 1 thread is then no slower than
2, the true answer there; see docs/compare.md for the measurements). About 60-90 s in all
under load (the threads test then skips in a second), about 35 s more when it runs.

Split by tier from tests/test_ab_flag.py: these are its unit tests; the others are in
tests/sessions/test_ab_flag_session.py, tests/e2e/test_ab_flag_e2e.py.
"""

from __future__ import annotations

import pytest

from pytest_llmperf.run.ab_flag import b_settings
from pytest_llmperf.settings import ConfigError, Settings, parse_overrides

# -- parsing -----------------------------------------------------------------------------------


def test_overrides_are_checked_like_the_options() -> None:
    assert parse_overrides(["threads=1", "engine_arg.flash-attn=true", "n-batch=64"],
                           "--llmperf-ab") == {"threads": "1", "engine_arg.flash_attn": "true",
                                               "n_batch": "64"}
    with pytest.raises(ConfigError, match=r"unknown key 'thread'; did you mean threads\?"):
        parse_overrides(["thread=1"], "--llmperf-ab")
    with pytest.raises(ConfigError, match=r"--llmperf-ab threads: '0' must be >= 1"):
        parse_overrides(["threads=0"], "--llmperf-ab")
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        parse_overrides(["threads"], "--llmperf-ab")
    with pytest.raises(ConfigError, match=r"not one of completions, chat"):
        parse_overrides(["endpoint=grpc"], "--llmperf-ab")
    # B: A's settings with the overrides; engine arguments merged; a URL means a server.
    a = Settings(threads=2, engine_arg='{"seed":1}')
    b = b_settings(a, {"threads": "1", "engine_arg.flash_attn": "true"})
    assert (b.threads, b.engine_args()) == (1, {"flash_attn": True, "seed": 1})
    assert b_settings(Settings(), {"url": "http://x:1"}).engine == "openai"
