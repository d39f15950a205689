"""Deciding: from a run's numbers to pass or fail.

``thresholds`` (marker limits), ``stats`` (the stored-baseline decision), ``paired`` (the exact
sign-flip test over interleaved pairs), ``changepoints`` (shifts over the per-commit history),
``gate`` (a test's runs against its stored baseline), ``ab`` (paired A/B in one job),
``outcome`` (everything one test is judged on), ``failure`` (one way a test failed),
``power`` (the MDE every verdict carries, blind passes) and ``tails`` (the samples a tail
percentile rests on).
No I/O of its own beyond what ``gate`` reads through ``store/``.
"""
