"""Evaluation as a release gate: task suites, the runner (of the suite's agent, or of an
external one through the MCP proxy), scorers, reports and the gate; the red team (attack
pairs replayed without a model) and its replay agents."""

from opsgate.evals._evaluate import Evaluation, evaluate
from opsgate.evals._external import (
    AGENT_MODELS,
    ExternalAgent,
    evaluate_external,
    run_external_task,
)
from opsgate.evals._formats import junit_xml, markdown_summary
from opsgate.evals._from_runs import (
    default_like_suite,
    draft_runs,
    make_redactor,
    parse_since,
    render_suite,
)
from opsgate.evals._merge import merge_reports
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
from opsgate.evals._report import (
    build_report,
    check_rate,
    compare,
    covered_tasks,
    load_report,
    metrics,
    no_verdict,
    results_of,
    thresholds_failures,
)
from opsgate.evals._result import TaskResult
from opsgate.evals._review import ImpactRules, ReviewItem, review_items, review_summary, sample
from opsgate.evals._runner import Harness, run_suite, run_task, select_tasks
from opsgate.evals._score_plan import score_plan
from opsgate.evals._store import (
    BASELINES_DIR,
    VERDICTS,
    BaselineRecord,
    EvalStore,
    check_report,
    committed_baseline,
    default_baseline,
    format_time,
    open_existing,
)
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
    "AGENT_MODELS",
    "BASELINES_DIR",
    "GATES",
    "TEMPLATES",
    "VERDICTS",
    "Attack",
    "AttackGoal",
    "AttackSurface",
    "BaselineRecord",
    "EvalStore",
    "Evaluation",
    "ExternalAgent",
    "GateSummary",
    "Harness",
    "ImpactRules",
    "RedteamReport",
    "RedteamSpec",
    "ReferenceCall",
    "ReplayAgent",
    "ReviewItem",
    "Suite",
    "Task",
    "TaskResult",
    "build_report",
    "check_rate",
    "check_report",
    "committed_baseline",
    "compare",
    "covered_tasks",
    "default_baseline",
    "default_like_suite",
    "draft_runs",
    "evaluate",
    "evaluate_external",
    "find_suite",
    "format_time",
    "junit_xml",
    "load_report",
    "load_suite",
    "make_redactor",
    "markdown_summary",
    "merge_reports",
    "metrics",
    "mislabelled",
    "no_verdict",
    "open_existing",
    "parse_since",
    "render_suite",
    "resolve_args",
    "results_of",
    "review_items",
    "review_summary",
    "run_external_task",
    "run_redteam",
    "run_suite",
    "run_task",
    "sample",
    "score_plan",
    "select_tasks",
    "thresholds_failures",
    "with_plan_lock",
]
