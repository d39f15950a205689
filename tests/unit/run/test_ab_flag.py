"""``--llmperf-ab KEY=VALUE`` (a config change as a paired A/B in one flag): the overrides
parsed and checked like the options, and the B side's settings built from them.

Split by tier from tests/test_ab_flag.py: these are its unit tests; the others, and what each
engine shows, are in tests/sessions/test_ab_flag_session.py, tests/e2e/test_ab_flag_e2e.py.
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
