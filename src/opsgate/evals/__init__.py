"""Evaluation as a release gate: task suites, the runner, scorers, reports and the gate; the
red team (attack pairs replayed without a model) and its replay agents."""

from opsgate.evals._evaluate import Evaluation, evaluate
from opsgate.evals._from_runs import parse_since
from opsgate.evals._redteam import (
    GATES,
    TEMPLATES,
    GateSummary,
    RedteamReport,
    mislabelled,
    run_redteam,
    with_plan_lock,
)
from opsgate.evals._replay import Attack, ReplayAgent, resolve_args
from opsgate.evals._report import build_report, compare, load_report
from opsgate.evals._review import review_summary
from opsgate.evals._runner import Harness, TaskResult, run_suite, run_task, select_tasks
from opsgate.evals._store import EvalStore, default_baseline
from opsgate.evals._suite import (
    AttackGoal,
    AttackSurface,
    RedteamSpec,
    ReferenceCall,
    Suite,
    Task,
    find_suite,
    load_suite,
)

__all__ = [
    "GATES",
    "TEMPLATES",
    "Attack",
    "AttackGoal",
    "AttackSurface",
    "EvalStore",
    "Evaluation",
    "GateSummary",
    "Harness",
    "RedteamReport",
    "RedteamSpec",
    "ReferenceCall",
    "ReplayAgent",
    "Suite",
    "Task",
    "TaskResult",
    "build_report",
    "compare",
    "default_baseline",
    "evaluate",
    "find_suite",
    "load_report",
    "load_suite",
    "mislabelled",
    "parse_since",
    "resolve_args",
    "review_summary",
    "run_redteam",
    "run_suite",
    "run_task",
    "select_tasks",
    "with_plan_lock",
]
