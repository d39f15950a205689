"""Test helpers with known behaviour, for this project's tests and for users' own:
``oracle`` (a streaming server on a known schedule), ``tiny_model`` (a tiny GGUF writer) and
``plugin`` (an opt-in pytest plugin with fixtures over both: ``-p pytest_llmperf.testing.plugin``).
"""
