"""Accuracy of an engine under test: scoring item by item (``accuracy``) on built-in offline
tasks (``tasks``) or lm-eval tasks, and paired comparisons between model formats."""
