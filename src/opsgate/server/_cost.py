"""The Cost page: spend per UTC day, per workflow and per model over a window, from
`opsgate.cost.CostLedger` (production runs unless eval trials are asked for), and its charts'
data: spend per day against the daily budget in force, cost per successful task over time;
its breakdowns by role, tool, agent and invoker over the same window, and each workflow's
week-over-week drift (`CostLedger.drift`). The breakdowns are a view of their own so the
Overview, which reads `cost_view` too, does not pay for them.

The roll-ups read every ledger entry of the window (tens of thousands a week for a busy
team), so a view and its charts are kept and served again until the data under them change:
the key holds the newest ledger entry and the newest audit event (every run's outcome is
written by one), both an index look-up away, and the UTC day. Concurrent requests for the
same view wait for one computation; a view older than `_MAX_AGE_S` is recomputed anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Integer, cast, func, select

from opsgate.cost import CostLedger, DayCost, Drift, ModelCost, WorkflowCost
from opsgate.server._kept import kept
from opsgate.store import Store, audit_events, cost_entries, runs

__all__ = [
    "CostBreakdown",
    "CostSlice",
    "CostView",
    "cost_breakdown",
    "cost_charts",
    "cost_view",
    "kept_page",
]

_DAY = 86400.0
_MAX_AGE_S = 60.0
T = TypeVar("T")
#: Longer windows chart cost per successful task per week (one roll-up per bucket).
_DAILY_UP_TO = 31


@dataclass(frozen=True, slots=True)
class CostView:
    """What the Cost page shows."""

    days: list[DayCost]
    workflows: list[WorkflowCost]
    models: list[ModelCost]
    total_usd: float

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API (days as ISO dates)."""
        return {
            "days": [{**asdict(d), "day": d.day.isoformat()} for d in self.days],
            "workflows": [asdict(w) for w in self.workflows],
            "models": [asdict(m) for m in self.models],
            "total_usd": self.total_usd,
        }


def _data_version(store: Store) -> tuple[Any, Any]:
    """The newest ledger entry and audit event: what changes when the page would."""
    with store.engine.connect() as conn:
        return (
            conn.execute(select(func.max(cost_entries.c.id))).scalar(),
            conn.execute(select(func.max(audit_events.c.seq))).scalar(),
        )


def data_version(store: Store) -> tuple[Any, ...]:
    """What the cost figures are kept under: the UTC day, the newest ledger entry and the
    newest audit event (what changes when the page would)."""
    now = time.time()
    return (now - now % _DAY, *_data_version(store))


def _cached(store: Store, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """``compute()``, or what it gave for ``key`` while no ledger entry or audit event was
    written since (and within `_MAX_AGE_S`, on the same UTC day)."""
    return kept(store, (*key, *data_version(store)), _MAX_AGE_S, compute)


def cost_view(store: Store, *, days: int, workflow: str | None, include_eval: bool) -> CostView:
    """The last ``days`` UTC days (today included), of one workflow or all."""
    return _cached(
        store,
        ("view", days, workflow, include_eval),
        lambda: _compute(store, days=days, workflow=workflow, include_eval=include_eval),
    )


def _since(days: int, now: float) -> float:
    """The start of the window: the UTC midnight ``days - 1`` days before today's."""
    return now - (now % _DAY) - (days - 1) * _DAY


def _compute(store: Store, *, days: int, workflow: str | None, include_eval: bool) -> CostView:
    ledger = CostLedger(store)
    now = time.time()
    since = _since(days, now)
    per_day = ledger.by_day(workflow, days, now, include_eval=include_eval)
    workflows = [
        w
        for w in ledger.by_workflow(since, now, include_eval=include_eval)
        if workflow is None or w.workflow == workflow
    ]
    models = ledger.by_model(since, now, include_eval=include_eval) if workflow is None else []
    return CostView(per_day, workflows, models, sum(d.cost_usd for d in per_day))


def _day_start(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def cost_charts(
    store: Store,
    view: CostView,
    *,
    workflow: str | None,
    include_eval: bool,
    daily_budget: float | None,
    per_success: bool = True,
) -> dict[str, Any]:
    """The Cost page's two charts, numbers only: ``spend`` (per UTC day, with the daily
    budget in force when one workflow is shown) and ``per_success`` (cost per successful
    task per day, or per 7-day bucket over longer windows; null where nothing succeeded;
    left out unless ``per_success``: it costs a roll-up per bucket)."""
    return _cached(
        store,
        ("charts", len(view.days), workflow, include_eval, daily_budget, per_success),
        lambda: _charts(store, view, workflow, include_eval, daily_budget, per_success),
    )


def _charts(
    store: Store,
    view: CostView,
    workflow: str | None,
    include_eval: bool,
    daily_budget: float | None,
    per_success: bool,
) -> dict[str, Any]:
    starts = [_day_start(d.day) for d in view.days]
    series: list[list[float]] = [[round(d.cost_usd, 8) for d in view.days]]
    if daily_budget is not None:
        series.append([daily_budget] * len(starts))
    spend = {"kind": "spend", "x": starts, "series": series}
    if not per_success:
        return {"spend": spend}
    step = 1 if len(starts) <= _DAILY_UP_TO else 7
    ledger = CostLedger(store)
    xs: list[float] = []
    values: list[float | None] = []
    for i in range(0, len(starts), step):
        since = starts[i]
        until = min(since + step * _DAY, time.time() + 1)
        rows = [
            w
            for w in ledger.by_workflow(since, until, include_eval=include_eval)
            if workflow is None or w.workflow == workflow
        ]
        successes = sum(w.successful_runs for w in rows)
        cost = sum(w.cost_usd for w in rows)
        xs.append(since)
        values.append(round(cost / successes, 8) if successes else None)
    chart = {"kind": "per_success", "x": xs, "series": [values], "step_days": step}
    return {"spend": spend, "per_success": chart}


@dataclass(frozen=True, slots=True)
class CostSlice:
    """The ledger entries of one role, tool, agent or invoker over the window.

    Attributes:
        name: The role, tool, agent id or invoker ("" where the entry has none: a tool
            call has no role). Hostile text (invokers): escaped on render.
        entries: Model or tool calls recorded.
    """

    name: str
    entries: int
    cost_usd: float
    estimate: bool


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Spend by model role (model calls), by tool (tool calls), by agent and by invoker
    (every entry, through its run), largest spend first; and per workflow of the window, its
    last 7 days against the 7 before (``drift``, ending now)."""

    roles: list[CostSlice]
    tools: list[CostSlice]
    agents: list[CostSlice]
    invokers: list[CostSlice]
    drift: list[Drift]

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API."""
        return {
            "by_role": [asdict(c) for c in self.roles],
            "by_tool": [asdict(c) for c in self.tools],
            "by_agent": [asdict(c) for c in self.agents],
            "by_invoker": [asdict(c) for c in self.invokers],
            "drift": [asdict(d) for d in self.drift],
        }


def cost_breakdown(
    store: Store, view: CostView, *, days: int, workflow: str | None, include_eval: bool
) -> CostBreakdown:
    """The breakdowns of ``view``'s window and filters (the drift of its workflows)."""
    return _cached(
        store,
        ("breakdown", days, workflow, include_eval),
        lambda: _breakdown(store, view, days, workflow, include_eval),
    )


def _slices(
    store: Store, key: Any, scope: list[ColumnElement[bool]], join: bool
) -> list[CostSlice]:
    ce = cost_entries
    stmt = select(
        key,
        func.count(),
        func.coalesce(func.sum(ce.c.cost_usd), 0.0),
        func.max(cast(ce.c.estimate, Integer)),  # PostgreSQL has no max(boolean)
    )
    if join:
        stmt = stmt.select_from(ce.join(runs, ce.c.run_id == runs.c.run_id))
    with store.engine.connect() as conn:
        rows = conn.execute(stmt.where(*scope).group_by(key)).all()
    found = [CostSlice(str(r[0] or ""), int(r[1]), float(r[2]), bool(r[3])) for r in rows]
    return sorted(found, key=lambda c: (-c.cost_usd, c.name))


def _breakdown(
    store: Store, view: CostView, days: int, workflow: str | None, include_eval: bool
) -> CostBreakdown:
    ce = cost_entries
    now = time.time()
    purposes = ("production", "eval") if include_eval else ("production",)
    scope: list[ColumnElement[bool]] = [
        ce.c.at >= _since(days, now),
        ce.c.at < now + 1,
        ce.c.purpose.in_(purposes),
    ]
    if workflow is not None:
        scope.append(ce.c.workflow == workflow)
    ledger = CostLedger(store)
    return CostBreakdown(
        roles=_slices(store, ce.c.role, [*scope, ce.c.kind == "model"], join=False),
        tools=_slices(store, ce.c.tool, [*scope, ce.c.kind == "tool"], join=False),
        agents=_slices(store, runs.c.agent_id, scope, join=True),
        invokers=_slices(store, runs.c.invoker, scope, join=True),
        drift=[ledger.drift(w.workflow, now, include_eval=include_eval) for w in view.workflows],
    )


def kept_page(store: Store, key: tuple[Any, ...], render: Callable[[], T]) -> T:
    """What ``render()`` made of the figures for ``key`` (a page's body), kept and served
    again like the figures themselves: rendering a window's tables costs more than reading
    the kept figures."""
    return _cached(store, ("page", *key), render)
