"""The one error of a workload that cannot be run as asked (``WorkloadError``), in a module of
its own so that the workload's helpers (run/traces.py ...) raise it without importing
run/workload.py, which calls them. Stdlib only."""

from __future__ import annotations


class WorkloadError(ValueError):
    """A workload that cannot be run as asked."""
