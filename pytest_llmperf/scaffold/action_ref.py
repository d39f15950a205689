"""The reference users write in a workflow to use the project's GitHub Action."""

ACTION_REF = "pytest-llmperf/pytest-llmperf@v1"
