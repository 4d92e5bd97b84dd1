"""Evaluation as a release gate: task suites, the runner, scorers, reports and the gate."""

from opsgate.evals._suite import Suite, Task, find_suite, load_suite

__all__ = ["Suite", "Task", "find_suite", "load_suite"]
