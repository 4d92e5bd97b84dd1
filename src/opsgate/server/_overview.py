"""The Overview: per workflow, how it goes (success rate), what a success costs against its
budget, what was spent today against the daily budget, and who is waiting for a person.

Outcomes and spend come from `opsgate.cost.CostLedger`; budgets are those in force
(`budgets_in_force`: an admin's override, else the router file's), with where each came from.
With a policy, each workflow's one KPI (its ``kpi`` key): this window's value against the
window before it, and against its target.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select

from opsgate.cost import CostLedger
from opsgate.gateway import DurableApprovalQueue
from opsgate.policy import CompiledPolicy
from opsgate.server._budgets import BudgetInForce
from opsgate.store import Store, approvals, runs

__all__ = ["WorkflowHealth", "WorkflowKpi", "kpis", "overview"]

_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class WorkflowHealth:
    """One workflow over the window.

    Attributes:
        over_cost_budget: The cost per successful task is above the budget's
            ``max_cost_per_task`` (None: no budget or no success to measure).
        over_daily_budget: Today's spend is above ``daily_spend`` (None: no budget).
        cost_budget_source / daily_budget_source: ``console``, ``router file`` or ``""``.
    """

    workflow: str
    runs: int
    ended_runs: int
    success_rate: float | None
    cost_usd: float
    cost_per_success: float | None
    max_cost_per_task: float | None
    spend_today: float
    daily_budget: float | None
    pending_approvals: int
    estimate: bool
    over_cost_budget: bool | None
    over_daily_budget: bool | None
    cost_budget_source: str = ""
    daily_budget_source: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API."""
        return asdict(self)


def overview(
    store: Store,
    *,
    days: int,
    budgets: Mapping[str, BudgetInForce],
    now: float | None = None,
) -> list[WorkflowHealth]:
    """Every workflow with runs in the last ``days`` days, spend today, a pending request or
    a budget; busiest first."""
    now = time.time() if now is None else now
    ledger = CostLedger(store)
    window = {w.workflow: w for w in ledger.by_workflow(now - days * _DAY, now)}
    today_start = now - (now % _DAY)
    today = {w.workflow: w.cost_usd for w in ledger.by_workflow(today_start, now)}
    pending: dict[str, int] = {}
    for record in DurableApprovalQueue(store).list("pending"):
        pending[record.workflow] = pending.get(record.workflow, 0) + 1
    names = set(window) | set(today) | set(pending) | set(budgets)
    out = []
    for name in names:
        w = window.get(name)
        budget = budgets.get(name)
        per_task = budget.max_cost_per_task if budget else None
        daily = budget.daily_spend if budget else None
        cost_per_success = w.cost_per_success if w else None
        spent = today.get(name, 0.0)
        out.append(
            WorkflowHealth(
                workflow=name,
                runs=w.runs if w else 0,
                ended_runs=w.ended_runs if w else 0,
                success_rate=w.success_rate if w else None,
                cost_usd=w.cost_usd if w else 0.0,
                cost_per_success=cost_per_success,
                max_cost_per_task=per_task,
                spend_today=spent,
                daily_budget=daily,
                pending_approvals=pending.get(name, 0),
                estimate=bool(w and w.estimate),
                over_cost_budget=(
                    None
                    if per_task is None or cost_per_success is None
                    else cost_per_success > per_task
                ),
                over_daily_budget=None if daily is None else spent > daily,
                cost_budget_source=budget.max_source if budget else "",
                daily_budget_source=budget.daily_source if budget else "",
            )
        )
    return sorted(out, key=lambda h: (-h.runs, h.workflow))


@dataclass(frozen=True, slots=True)
class WorkflowKpi:
    """A workflow's one KPI over the window and the one before it (same length).

    Attributes:
        current / previous: Its value (None: nothing to measure: no ended run, no success,
            no decided request).
        trend: ``up``, ``down``, ``flat`` or ``""`` (a window without a value).
        met: Whether ``current`` meets the target (None: no value).
    """

    workflow: str
    metric: str
    target: float
    higher_is_better: bool
    current: float | None
    previous: float | None
    trend: str
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API."""
        return asdict(self)


def _ratios(
    store: Store, metric: str, since: float, until: float, names: list[str]
) -> dict[str, float | None]:
    """Each of ``names``' value of ``metric`` over ``[since, until)`` (production runs)."""
    if metric in ("success_rate", "cost_per_successful_task"):
        rows = CostLedger(store).by_workflow(since, until)
        if metric == "success_rate":
            return {w.workflow: w.success_rate for w in rows}
        return {w.workflow: w.cost_per_success for w in rows}
    if metric == "escalation_rate":
        table, col, at = runs, runs.c.status, runs.c.started_at
        hit: tuple[str, ...] = ("escalated",)
        among: tuple[str, ...] = ("completed", "escalated", "failed")
        extra = [runs.c.purpose == "production"]
    else:  # approval_rate: approved over decided, of the requests made in the window
        table, col, at = approvals, approvals.c.status, approvals.c.requested_at
        hit, among = ("approved",), ("approved", "denied")
        extra = []
    query = (
        select(table.c.workflow, col, func.count())
        .where(table.c.workflow.in_(names), col.in_(among), at >= since, at < until, *extra)
        .group_by(table.c.workflow, col)
    )
    counts: dict[str, list[int]] = {}
    with store.engine.connect() as conn:
        for workflow, status, n in conn.execute(query):
            tally = counts.setdefault(str(workflow), [0, 0])
            tally[1] += int(n)
            if status in hit:
                tally[0] += int(n)
    return {w: (h / total if total else None) for w, (h, total) in counts.items()}


def _trend(current: float | None, previous: float | None) -> str:
    if current is None or previous is None:
        return ""
    if abs(current - previous) <= 1e-9 * max(abs(current), abs(previous), 1.0):
        return "flat"
    return "up" if current > previous else "down"


def kpis(
    store: Store, policy: CompiledPolicy, *, days: int, now: float | None = None
) -> dict[str, WorkflowKpi]:
    """Per workflow of ``policy`` that names a KPI: its value over the last ``days`` days and
    the ``days`` before. One read per metric in use and window."""
    now = time.time() if now is None else now
    span = days * _DAY
    wanted = {w: k for w in policy.document.workflows if (k := policy.kpi(w)) is not None}
    by_metric: dict[str, list[str]] = {}
    for workflow, kpi in wanted.items():
        by_metric.setdefault(kpi.metric, []).append(workflow)
    values: dict[str, tuple[float | None, float | None]] = {}
    for metric, names in by_metric.items():
        this = _ratios(store, metric, now - span, now, names)
        before = _ratios(store, metric, now - 2 * span, now - span, names)
        for name in names:
            values[name] = (this.get(name), before.get(name))
    out = {}
    for workflow, kpi in sorted(wanted.items()):
        current, previous = values[workflow]
        out[workflow] = WorkflowKpi(
            workflow=workflow,
            metric=kpi.metric,
            target=kpi.target,
            higher_is_better=kpi.higher_is_better,
            current=current,
            previous=previous,
            trend=_trend(current, previous),
            met=None if current is None else kpi.met(current),
        )
    return out
