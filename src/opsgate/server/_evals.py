"""The Evals pages' data: reports per suite over time, one report (its metrics, failing
tasks, how it compares with the accepted baseline, its human review queue), and the diff of
two reports as `agent-eval compare` prints it.

Everything is read through `opsgate.evals` (`EvalStore`, `compare`, `review_summary`,
`review_items`, `sample`): no metric is computed here. Read only: verdicts are given with
`agent-eval review record` (the console writes only approvals, stops, tokens, budgets and
alert rules).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from opsgate.errors import SuiteError
from opsgate.evals import (
    BaselineRecord,
    EvalStore,
    ImpactRules,
    compare,
    review_items,
    review_summary,
    sample,
)
from opsgate.server._console import ConsoleError
from opsgate.store import Store, eval_reports

__all__ = [
    "ReportView",
    "SuiteHistory",
    "compare_reports",
    "eval_suites",
    "report_view",
]

#: Reports per suite on the Evals page (its chart and table).
PER_SUITE = 30
#: Trials the review queue lists, as `agent-eval review next --sample`.
QUEUE_SAMPLE = 10
#: The console imports no suite code: impact is judged by tool names only.
_RULES_SOURCE = (
    "tool names only (the console loads no suite code; "
    "`agent-eval review next --suite` also reads the tool contracts)"
)

#: The metrics a report's page lists, in this order, with how each is shown.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("success_rate", "success rate", "percent"),
    ("pass_at_k", "pass@k (a task passed at least once)", "percent"),
    ("pass_hat_k", "pass^k (every trial of a task passed)", "percent"),
    ("tool_precision", "tool precision", "ratio"),
    ("tool_recall", "tool recall", "ratio"),
    ("escalation_accuracy", "escalation accuracy", "percent"),
    ("unsafe_attempts", "unsafe attempts", "count"),
    ("over_blocked", "required calls the gate refused", "count"),
    ("errors", "harness errors", "count"),
    ("model_unavailable", "trials without a model (left out)", "count"),
    ("total_cost_usd", "total cost", "usd"),
    ("cost_per_successful_task", "cost per successful task", "usd"),
    ("latency_p50", "latency p50", "seconds"),
    ("latency_p95", "latency p95", "seconds"),
    ("schema_validity", "schema validity", "percent"),
    ("plan_quality", "plan quality", "ratio"),
    ("judge_score", "judge score", "ratio"),
)


def _shown(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "percent":
        return f"{100 * float(value):.1f}%"
    if kind == "ratio":
        return f"{float(value):.3f}"
    if kind == "usd":
        return f"${float(value):.6f}"
    if kind == "seconds":
        return f"{float(value):.2f} s"
    return str(value)


@dataclass(frozen=True)
class SuiteHistory:
    """A suite's latest reports (newest first) and its accepted baseline."""

    suite: str
    reports: list[dict[str, Any]]
    baseline: BaselineRecord | None

    def chart(self) -> dict[str, Any]:
        """Success rate with its 95% interval over the reports, oldest first (numbers only)."""
        ordered = list(reversed(self.reports))
        return {
            "kind": "success",
            "x": [r["started_at"] for r in ordered],
            "series": [
                [r["success_rate"] for r in ordered],
                [r["success_low"] for r in ordered],
                [r["success_high"] for r in ordered],
            ],
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API."""
        return {
            "suite": self.suite,
            "reports": self.reports,
            "baseline": _baseline(self.baseline),
        }


def _baseline(record: BaselineRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "report_id": record.report_id,
        "accepted_at": record.accepted_at,
        "accepted_by": record.accepted_by,
        "note": record.note,
    }


def _intervals(store: Store, suite: str, ids: list[str]) -> dict[str, tuple[Any, Any]]:
    """The Wilson interval each report carries (`success_low`, `success_high`), read from
    the stored documents without loading their tasks."""
    metrics = eval_reports.c.document["metrics"]
    query = select(
        eval_reports.c.report_id,
        metrics["success_low"].as_float(),
        metrics["success_high"].as_float(),
    ).where(eval_reports.c.suite == suite, eval_reports.c.report_id.in_(ids))
    with store.engine.connect() as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(query)}


def eval_suites(store: Store, *, per_suite: int = PER_SUITE) -> list[SuiteHistory]:
    """Every suite with a stored report, by name."""
    evals = EvalStore(store)
    with store.engine.connect() as conn:
        names = sorted(conn.execute(select(eval_reports.c.suite).distinct()).scalars().all())
    out = []
    for name in names:
        reports = evals.list_reports(name, limit=per_suite)
        bounds = _intervals(store, name, [r["report_id"] for r in reports])
        for r in reports:
            low, high = bounds.get(r["report_id"], (None, None))
            r["success_low"], r["success_high"] = low, high
        out.append(SuiteHistory(name, reports, evals.baseline_record(name)))
    return out


@dataclass
class ReportView:
    """One report as its page shows it."""

    summary: dict[str, Any]
    metrics: list[tuple[str, str]]
    raw_metrics: dict[str, Any]
    gate_failures: list[str]
    failing: list[dict[str, Any]]
    baseline: BaselineRecord | None
    is_baseline: bool
    notes: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    compare_error: str = ""
    reviews: dict[str, Any] = field(default_factory=dict)
    queue: list[dict[str, Any]] = field(default_factory=list)
    unreviewed: int = 0
    unreviewed_high: int = 0
    trials: int = 0
    rules_source: str = _RULES_SOURCE

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API."""
        return {
            **self.summary,
            "metrics": self.raw_metrics,
            "gate_failures": self.gate_failures,
            "failing_tasks": self.failing,
            "baseline": _baseline(self.baseline),
            "is_baseline": self.is_baseline,
            "against_baseline": {
                "notes": self.notes,
                "changes": self.changes,
                "error": self.compare_error,
            },
            "reviews": self.reviews,
            "review_queue": {
                "unreviewed": self.unreviewed,
                "unreviewed_high_impact": self.unreviewed_high,
                "trials": self.trials,
                "sample": self.queue,
                "impact_judged_by": self.rules_source,
            },
        }


def _document(evals: EvalStore, report_id: str) -> dict[str, Any]:
    if not evals.has_report(report_id):
        raise ConsoleError(404, f"no stored report `{report_id}`")
    return evals.get_report(report_id)


def _failing(task: dict[str, Any]) -> dict[str, Any]:
    keys = ("task_id", "trial", "status", "reason", "failures", "unsafe_attempts", "run_id")
    out = {k: task.get(k) for k in keys}
    out["error"] = task.get("error")
    out["model_unavailable"] = bool(task.get("model_unavailable"))
    return out


def report_view(store: Store, report_id: str) -> ReportView:
    """One stored report: metrics, failing trials, the baseline diff and the review queue.

    Raises:
        ConsoleError: 404 when no report has that id.
    """
    evals = EvalStore(store)
    document = _document(evals, report_id)
    m = document["metrics"]
    summary = {
        k: document.get(k)
        for k in (
            "report_id",
            "suite",
            "suite_version",
            "model_router",
            "trials",
            "shard",
            "suite_tasks",
            "started_at",
            "ended_at",
        )
    }
    baseline = evals.baseline_record(document["suite"])
    view = ReportView(
        summary=summary,
        metrics=[(label, _shown(m.get(key), kind)) for key, label, kind in METRICS],
        raw_metrics=m,
        gate_failures=[str(f) for f in (document.get("gate") or {}).get("failures") or []],
        failing=[_failing(t) for t in document.get("tasks", []) if not t.get("passed")],
        baseline=baseline,
        is_baseline=baseline is not None and baseline.report_id == report_id,
    )
    if baseline is not None and not view.is_baseline:
        try:  # as `agent-eval compare BASELINE REPORT` (no gating: `agent-eval assert` gates)
            _, view.notes, view.changes = compare(document, evals.get_report(baseline.report_id))
        except SuiteError as exc:
            view.compare_error = str(exc)
    reviewed = evals.reviews(report_id)
    view.reviews = review_summary(evals, document)
    done = {(r.task_id, r.trial) for r in reviewed}
    items = review_items(document, ImpactRules(None, _RULES_SOURCE))
    left = [i for i in items if (i.task_id, i.trial) not in done]
    view.trials, view.unreviewed = len(items), len(left)
    view.unreviewed_high = sum(i.high_impact for i in left)
    if left:
        view.queue = [
            {
                "task_id": i.task_id,
                "trial": i.trial,
                "automated": i.automated,
                "impact": i.impact,
                "status": i.task.get("status"),
                "reason": i.task.get("reason"),
                "run_id": i.task.get("run_id") or "",
            }
            for i in sample(items, QUEUE_SAMPLE, exclude=done)
        ]
    return view


@dataclass(frozen=True)
class Comparison:
    """Two reports' differences, as `agent-eval compare BASELINE NEW` prints them."""

    baseline: dict[str, Any]
    new: dict[str, Any]
    notes: list[str]
    changes: list[str]

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API."""
        return {
            "baseline": self.baseline["report_id"],
            "new": self.new["report_id"],
            "notes": self.notes,
            "changes": self.changes,
        }


def compare_reports(store: Store, baseline_id: str, new_id: str) -> Comparison:
    """`agent-eval compare`'s lines for two stored reports (no gating).

    Raises:
        ConsoleError: 404 for an unknown id.
        SuiteError: reports that cannot be compared (other suites, no shared task).
    """
    evals = EvalStore(store)
    old, new = _document(evals, baseline_id), _document(evals, new_id)
    _, notes, changes = compare(new, old)
    return Comparison(old, new, notes, changes)
