"""Settings declared once: the option table and the engine cache key derive from the fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pytest_llmperf.settings import OPTIONS, ConfigError, OptionSpec, Settings, resolve


def none(spec: OptionSpec) -> Any:
    return None


def test_every_field_is_one_option_with_its_names_type_and_default() -> None:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    assert [o.name for o in OPTIONS] == list(fields)
    by_name = {o.name: o for o in OPTIONS}
    assert by_name["threads"].kind is int and by_name["threads"].default is None
    assert by_name["alpha"].kind is float and by_name["alpha"].default == 0.01
    assert by_name["save"].kind is bool and by_name["save"].default is False
    assert by_name["endpoint"].choices == ("completions", "chat")
    spec = by_name["n_batch"]
    assert (spec.flag, spec.ini, spec.env) == ("--llmperf-n-batch", "llmperf_n_batch",
                                               "LLMPERF_N_BATCH")
    assert resolve(none, none, environ={}) == Settings()


def test_engine_key_changes_with_engine_settings_only() -> None:
    base = Settings()
    assert dataclasses.replace(base, threads=1).engine_key() != base.engine_key()
    assert dataclasses.replace(base, model="x.gguf").engine_key() != base.engine_key()
    # Reports, repeats and gate options do not make another engine.
    same = dataclasses.replace(base, json="r.json", repeats=3, alpha=0.05, save=True)
    assert same.engine_key() == base.engine_key()


def test_precedence_and_conversion() -> None:
    def cli(spec: OptionSpec) -> Any:
        return {"threads": "3"}.get(spec.name)

    def ini(spec: OptionSpec) -> Any:
        return {"threads": "2", "n_ctx": "1024"}.get(spec.name)

    env = {"LLMPERF_N_CTX": "4096", "LLMPERF_REPEATS": "5", "LLMPERF_SAVE": "yes"}
    s = resolve(cli, ini, environ=env)
    assert (s.threads, s.n_ctx, s.repeats, s.save) == (3, 1024, 5, True)


@pytest.mark.parametrize(("env", "message"), [
    ({"LLMPERF_THREADS": "two"}, "environment variable LLMPERF_THREADS: 'two' is not a valid int"),
    ({"LLMPERF_REPEATS": "0"}, "environment variable LLMPERF_REPEATS: '0' must be >= 1"),
    ({"LLMPERF_ENGINE": "tgi"}, "'tgi' is not one of llama_cpp, openai, vllm, trtllm"),
    ({"LLMPERF_SAVE": "maybe"}, "'maybe' is not a boolean"),
])
def test_bad_values_name_their_source(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve(none, none, environ=env)
    assert message in str(err.value)


def test_plugin_engines_are_valid_names() -> None:
    s = resolve(none, none, environ={"LLMPERF_ENGINE": "mine"}, engines=("llama_cpp", "mine"))
    assert s.engine == "mine"
