"""Evaluation as a release gate: task suites, the runner, scorers, reports and the gate."""

from opsgate.evals._report import build_report, compare, load_report
from opsgate.evals._review import review_summary
from opsgate.evals._store import EvalStore, default_baseline
from opsgate.evals._suite import Suite, Task, find_suite, load_suite

__all__ = [
    "EvalStore",
    "Suite",
    "Task",
    "build_report",
    "compare",
    "default_baseline",
    "find_suite",
    "load_report",
    "load_suite",
    "review_summary",
]
