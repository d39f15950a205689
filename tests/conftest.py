"""Shared fixtures come from the package's opt-in test plugin: ``tiny_model`` (a tiny
random-weight GGUF that real llama.cpp loads in milliseconds), ``llmperf_oracle`` and
``llmperf_pytester``."""

pytest_plugins = ["pytest_llmperf.testing.plugin"]
