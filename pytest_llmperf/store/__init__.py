"""Keeping baselines: ``baselines`` (the per-commit, per-profile files in a directory),
``backends`` (a git branch or an object store behind the same interface), ``profile`` (what
must match for two numbers to be comparable) and ``gitinfo`` (the commit, branch and dirty
flag a run belongs to)."""
