"""``Workload.params`` on the in-process vLLM engine: the fields mapped onto ``SamplingParams``
(vLLM's own names, as its OpenAI server maps a request's body), with structured outputs as the
installed vLLM spells them (``SamplingParams(structured_outputs=StructuredOutputsParams(...))``:
``json``, ``regex``, ``choice``, ``grammar``, ``json_object``). ``response_format`` (OpenAI's
shape) and the older ``guided_json`` / ``guided_regex`` / ``guided_choice`` /
``guided_grammar`` fields become the same. Pure logic: the engine builds the objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .request_fields import response_schema, unsupported_params_problem

# SamplingParams fields taken as they are.
DIRECT = ("top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty",
          "repetition_penalty", "stop", "stop_token_ids", "logprobs", "bad_words",
          "include_stop_str_in_output", "skip_special_tokens", "allowed_token_ids")
RENAMED = {"repeat_penalty": "repetition_penalty"}
GUIDED = {"guided_json": "json", "guided_regex": "regex", "guided_choice": "choice",
          "guided_grammar": "grammar"}
SUPPORTED = (*DIRECT, *RENAMED, *GUIDED, "logit_bias", "response_format",
             "structured_outputs")


def problem(params: Mapping[str, Any]) -> str | None:
    """Why these params cannot be applied here (None when they can)."""
    found = unsupported_params_problem("vllm", params, SUPPORTED)
    if found:
        return found
    kinds = [k for k in ("response_format", "structured_outputs", *GUIDED) if k in params]
    fmt = params.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "text":
        kinds.remove("response_format")
    if len(kinds) > 1:
        return (f"Workload.params: {', '.join(kinds)} each ask for structured outputs; "
                "give one")
    return None


def sampling_kwargs(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(SamplingParams keyword arguments, StructuredOutputsParams keyword arguments or None)
    for checked params."""
    kwargs: dict[str, Any] = {}
    structured: dict[str, Any] | None = None
    for key, value in params.items():
        if key in DIRECT:
            kwargs[key] = value
        elif key in RENAMED:
            kwargs[RENAMED[key]] = value
        elif key == "logit_bias":
            kwargs[key] = {int(k): float(v) for k, v in dict(value).items()}
        elif key in GUIDED:
            structured = {GUIDED[key]: value}
        elif key == "structured_outputs":
            structured = dict(value)
        elif key == "response_format":
            schema = response_schema(value)
            if schema is not None:
                structured = {"json": schema} if schema else {"json_object": True}
    return kwargs, structured


def lora_modules(value: Any) -> dict[str, str]:
    """The engine argument ``lora_modules`` (the name of ``vllm serve --lora-modules``):
    ``"NAME=PATH"``, several separated by spaces, a list of them, or a dict {NAME: PATH};
    {} for None. ValueError naming what is wrong."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    else:
        words = value.split() if isinstance(value, str) else value
        if not isinstance(words, list | tuple) or not all(isinstance(w, str) for w in words):
            raise ValueError(f"lora_modules={value!r} must be NAME=PATH (several separated by "
                             "spaces), a list of them, or a dict of name -> path")
        items = []
        for word in words:
            name, sep, path = word.partition("=")
            if not sep:
                raise ValueError(f"lora_modules: {word!r} is not NAME=PATH")
            items.append((name, path))
    out: dict[str, str] = {}
    for name, path in items:
        if not name or not isinstance(path, str) or not path:
            raise ValueError(f"lora_modules: {name!r} needs a name and a path")
        out[name] = path
    return out
