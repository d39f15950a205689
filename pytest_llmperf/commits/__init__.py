"""Driving pytest sessions over commits, in git worktrees: ``compare`` (BASE against HEAD,
interleaved), ``bisect`` (the commit where a regression began) and ``nightly`` (the
per-commit series of the store, its change points and the regressions not reported before)
and ``calibrate`` (A/A sessions: the noise, each gate's MDE and what it needs).
The ``llmperf`` command in ``cli/`` is their front end."""
