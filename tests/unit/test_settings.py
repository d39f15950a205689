"""Settings declared once: the option table and the engine cache key derive from the fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pytest_llmperf.engines.registry import engine_names
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
        resolve(none, none, environ=env, engines=engine_names())
    assert message in str(err.value)


def test_plugin_engines_are_valid_names() -> None:
    s = resolve(none, none, environ={"LLMPERF_ENGINE": "mine"}, engines=("llama_cpp", "mine"))
    assert s.engine == "mine"


# --------------------------------------------------------------------------- engine arguments


def test_engine_args_from_each_source_are_one_canonical_object() -> None:
    items = ["max-num-seqs=8", "enforce_eager=true", 'speculative_config={"method": "ngram", '
             '"num_speculative_tokens": 3}', "kv_cache_dtype=fp8", "scale=0.5", "tag=NaN"]
    expected = {"enforce_eager": True, "kv_cache_dtype": "fp8", "max_num_seqs": 8,
                "scale": 0.5, "speculative_config": {"method": "ngram",
                                                     "num_speculative_tokens": 3},
                "tag": "NaN"}

    def cli(spec: OptionSpec) -> Any:  # argparse's append action gives a list
        return items if spec.name == "engine_arg" else None

    def ini(spec: OptionSpec) -> Any:  # one per line, as a multi-line ini value
        return "\n" + "\n".join(reversed(items)) if spec.name == "engine_arg" else None

    env = {"LLMPERF_ENGINE_ARG": "; ".join(items[::2] + items[1::2])}
    from_cli, from_ini, from_env = (resolve(cli, none, environ={}),
                                    resolve(none, ini, environ={}),
                                    resolve(none, none, environ=env))
    assert from_cli.engine_args() == expected
    # The stored form is one JSON text with sorted keys: the order given does not matter, so
    # equal sets share one engine.
    assert from_cli.engine_arg == from_ini.engine_arg == from_env.engine_arg
    assert from_cli.engine_arg is not None and from_cli.engine_arg.startswith(
        '{"enforce_eager":true,"kv_cache_dtype":"fp8","max_num_seqs":8,')
    assert from_cli.engine_key() == from_env.engine_key() != Settings().engine_key()
    assert Settings().engine_args() == {}
    # The command line wins over the ini file as a whole (as for every setting).
    both = resolve(cli, lambda spec: "other=1" if spec.name == "engine_arg" else None,
                   environ={})
    assert "other" not in both.engine_args()


def test_a_later_item_wins_and_semicolons_inside_json_stay() -> None:
    env = {"LLMPERF_ENGINE_ARG": 'a=1;a=2;b={"x": "y;z"};c=[1, 2]\nd="quoted text"'}
    s = resolve(none, none, environ=env)
    assert s.engine_args() == {"a": 2, "b": {"x": "y;z"}, "c": [1, 2], "d": "quoted text"}


@pytest.mark.parametrize(("item", "message"), [
    ("foo", "'foo' is not KEY=VALUE"),
    ("=3", "'=3' is not KEY=VALUE with KEY a name such as max_num_seqs (a-z, 0-9, _)"),
    ("Max=3", "'Max=3' is not KEY=VALUE with KEY a name"),
    ("9a=3", "'9a=3' is not KEY=VALUE with KEY a name"),
    ("a.b=3", "'a.b=3' is not KEY=VALUE with KEY a name"),
    ("a=", "'a=' has no value"),
])
def test_a_bad_engine_arg_is_one_line_naming_its_source(item: str, message: str) -> None:
    def cli(spec: OptionSpec) -> Any:
        return ["ok=1", item] if spec.name == "engine_arg" else None

    sources = [
        (cli, none, {}, "--llmperf-engine-arg: "),
        (none, lambda spec: item if spec.name == "engine_arg" else None, {},
         "ini key llmperf_engine_arg: "),
        (none, none, {"LLMPERF_ENGINE_ARG": f"ok=1;{item}"},
         "environment variable LLMPERF_ENGINE_ARG: "),
    ]
    for cli_, ini_, env, source in sources:
        with pytest.raises(ConfigError) as err:
            resolve(cli_, ini_, environ=env)
        assert str(err.value).startswith(source + message), str(err.value)
        assert "\n" not in str(err.value)


def test_context_len_is_engine_neutral_and_checked() -> None:
    s = resolve(none, none, environ={"LLMPERF_CONTEXT_LEN": "4096"})
    assert (s.context_len, s.n_ctx) == (4096, 2048)  # n_ctx stays llama.cpp's own default
    assert s.engine_key() != Settings().engine_key()
    assert Settings().context_len is None  # default: the model's own
    with pytest.raises(ConfigError, match="LLMPERF_CONTEXT_LEN: '0' must be >= 1"):
        resolve(none, none, environ={"LLMPERF_CONTEXT_LEN": "0"})
