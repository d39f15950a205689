"""The run id a CI system gives every job of a run (issue 26, item 5): shards of one matrix
merge without LLMPERF_RUN_ID."""

from __future__ import annotations

import pytest

from pytest_llmperf.report.provenance import ci_run_id


@pytest.mark.parametrize(("env", "expected"), [
    ({"GITHUB_RUN_ID": "9876543210", "GITHUB_RUN_ATTEMPT": "2"}, "gh-9876543210-2"),
    ({"GITHUB_RUN_ID": "42"}, "gh-42"),
    ({"CI_PIPELINE_ID": "1234567"}, "gl-1234567"),
    ({"BUILDKITE_BUILD_ID": "0190-ab", "BUILDKITE_RETRY_COUNT": "0"}, "bk-0190-ab-0"),
    ({"CIRCLE_WORKFLOW_ID": "5f3c-9a"}, "circle-5f3c-9a"),
    # GitHub first when several are set; odd characters dropped, never a path or a space.
    ({"CI_PIPELINE_ID": "7", "GITHUB_RUN_ID": "8"}, "gh-8"),
    ({"GITHUB_RUN_ID": "../1 2;x"}, "gh-12x"),
])
def test_the_ci_systems_run_names_the_run(env: dict[str, str], expected: str) -> None:
    assert ci_run_id(env) == expected


@pytest.mark.parametrize("env", [{}, {"GITHUB_RUN_ID": "  "}, {"GITHUB_RUN_ID": "/;"},
                                 {"CI": "true"}])
def test_outside_ci_there_is_none(env: dict[str, str]) -> None:
    assert ci_run_id(env) is None
