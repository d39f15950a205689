"""From a run's numbers to pass or fail: thresholds, the stored-baseline gate, paired A/B.

``thresholds`` (marker limits), ``stats`` (the statistical decisions), ``gate`` (a test's runs
against its stored baseline), ``ab`` (paired A/B in one job), ``store``/``profile``/``gitinfo``
(baselines per commit and profile), ``bisect`` (the commit where a regression began).
"""
