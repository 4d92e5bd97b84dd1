"""`CostLedger`: what runs cost, rolled up by run, workflow, day and model, and its drift.

The read side of ``cost_entries`` (written by `CostRecorder`), joined with the ``runs``
table (written by the audit trail) for outcomes. Counting rules:

- **Spend is counted when it was spent**: an entry belongs to the window holding its
  ``at``. Days are UTC days.
- **Runs are counted in the window they started in** (``runs.started_at``). A run the
  ``runs`` table does not know (no audit trail) is counted in each window where it has
  entries, with an unknown outcome.
- A run **succeeded** when its status is ``completed``; it **ended** when its status is
  ``completed``, ``escalated`` or ``failed``. The success rate is successful / ended runs
  (runs still going, or awaiting approval, are not failures yet).
- **Cost per successful task** is the window's total cost over its successful runs: the
  runs that escalated or failed are part of what a success costs.
- A figure is an **estimate** as soon as one entry behind it is (a local model priced at a
  compute estimate, or tokens the provider did not report).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, and_, case, cast, func, select

from opsgate.store import Store, cost_entries, runs

__all__ = [
    "CostLedger",
    "DayCost",
    "Drift",
    "DriftAlert",
    "ModelCost",
    "RunCost",
    "WorkflowCost",
]

_DAY = 86_400.0
_ENDED = ("completed", "escalated", "failed")
_ce = cost_entries.c


@dataclass(frozen=True, slots=True)
class RunCost:
    """What one run cost.

    Attributes:
        run_id: The run.
        workflow: Its workflow ("" when the ledger has no entry for it).
        cost_usd: Total spend.
        model_calls: Model calls made (failed ones included).
        failed_model_calls: Model calls that ended in an error.
        tool_calls: Tool calls that ran (results and errors).
        tool_errors: Tool calls that failed.
        input_tokens: Prompt tokens (cached ones included).
        output_tokens: Completion tokens.
        cached_input_tokens: Prompt tokens served from a provider's prompt cache.
        cache_hits: Model calls answered from the response cache.
        model_latency_s: Summed wall time of the model calls.
        estimate: True when any of the costs is an estimate.
    """

    run_id: str
    workflow: str
    cost_usd: float
    model_calls: int
    failed_model_calls: int
    tool_calls: int
    tool_errors: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_hits: int
    model_latency_s: float
    estimate: bool

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class WorkflowCost:
    """One workflow over a window.

    Attributes:
        workflow: The workflow.
        runs: Runs counted in the window (see the module's counting rules).
        ended_runs: Those that ended (completed, escalated or failed).
        successful_runs: Those that completed.
        success_rate: successful / ended runs, or None when none ended.
        cost_usd: Spend in the window.
        cost_per_success: ``cost_usd`` / successful runs, or None when none succeeded.
        model_calls: Model calls in the window.
        tool_calls: Tool calls in the window.
        input_tokens: Prompt tokens.
        output_tokens: Completion tokens.
        cached_input_tokens: Prompt tokens served from a provider's prompt cache.
        cache_hits: Model calls answered from the response cache.
        estimate: True when any of the costs is an estimate.
    """

    workflow: str
    runs: int
    ended_runs: int
    successful_runs: int
    success_rate: float | None
    cost_usd: float
    cost_per_success: float | None
    model_calls: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_hits: int
    estimate: bool

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class DayCost:
    """One UTC day's spend (of one workflow, or of all).

    Attributes:
        day: The UTC date.
        runs: Runs with at least one entry that day.
        cost_usd: Spend.
        model_calls: Model calls.
        tool_calls: Tool calls.
        input_tokens: Prompt tokens.
        output_tokens: Completion tokens.
        cached_input_tokens: Prompt tokens served from a provider's prompt cache.
        cache_hits: Model calls answered from the response cache.
        estimate: True when any of the costs is an estimate.
    """

    day: date
    runs: int
    cost_usd: float
    model_calls: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_hits: int
    estimate: bool


@dataclass(frozen=True, slots=True)
class ModelCost:
    """One model's calls over a window.

    Attributes:
        model: The model id (as the router named it).
        calls: Calls made.
        failed_calls: Calls that ended in an error.
        cache_hits: Calls answered from the response cache.
        attempts: HTTP attempts, retries included.
        input_tokens: Prompt tokens.
        output_tokens: Completion tokens.
        cached_input_tokens: Prompt tokens served from a provider's prompt cache.
        cost_usd: Spend.
        mean_latency_s: Mean wall time of a call (0 when there were none).
        estimate: True when any of the costs is an estimate.
    """

    model: str
    calls: int
    failed_calls: int
    cache_hits: int
    attempts: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float
    mean_latency_s: float
    estimate: bool


@dataclass(frozen=True, slots=True)
class DriftAlert:
    """One figure that moved past its threshold.

    Attributes:
        metric: ``success_rate`` or ``cost_per_success``.
        previous: Its value in the earlier window.
        current: Its value in the recent window.
        change: Success rate: the change in percentage points (negative: a drop). Cost per
            success: the relative change (0.4 = 40 % more).
        threshold: The threshold it passed (points, or a ratio).
        message: One line saying so.
    """

    metric: str
    previous: float
    current: float
    change: float
    threshold: float
    message: str


@dataclass(frozen=True, slots=True)
class Drift:
    """A workflow's recent window against the one before it.

    Attributes:
        workflow: The workflow.
        current: The recent window (the last ``window_days`` days up to ``now``).
        previous: The window before it, of the same length.
        success_rate_change: current - previous success rate, in percentage points, or None
            when either window has no ended run.
        cost_per_success_change: current / previous cost per successful task - 1, or None
            when either window has no success (or the earlier one cost nothing).
        alerts: What passed its threshold (empty: nothing to look at).
    """

    workflow: str
    current: WorkflowCost
    previous: WorkflowCost
    success_rate_change: float | None
    cost_per_success_change: float | None
    alerts: list[DriftAlert] = field(default_factory=list)


def _flag(condition: ColumnElement[bool]) -> Any:
    return case((condition, 1), else_=0)


def _sum(expr: Any) -> Any:
    return func.coalesce(func.sum(expr), 0)


def _day_start(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _utc_day(at: float) -> date:
    return datetime.fromtimestamp(at, UTC).date()


# The aggregate columns every roll-up of entries carries, in this order.
_ENTRY_TOTALS = (
    _sum(_ce.cost_usd),
    _sum(_flag(_ce.kind == "model")),
    _sum(_flag(_ce.kind == "tool")),
    _sum(_ce.input_tokens),
    _sum(_ce.output_tokens),
    _sum(_ce.cached_input_tokens),
    _sum(_flag(and_(_ce.kind == "model", _ce.cache_hit))),
    func.coalesce(func.max(_flag(_ce.estimate)), 0),
)


@dataclass(slots=True)
class _Totals:
    cost_usd: float = 0.0
    model_calls: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_hits: int = 0
    estimate: bool = False

    @classmethod
    def of(cls, values: Any) -> _Totals:
        cost, model, tool, inp, out, cached, hits, estimate = values
        return cls(
            float(cost),
            int(model),
            int(tool),
            int(inp),
            int(out),
            int(cached),
            int(hits),
            bool(estimate),
        )


class CostLedger:
    """Reads the cost ledger. Works on SQLite and PostgreSQL alike.

    Args:
        store: The opsgate database.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._engine = store.engine

    # -- one run ---------------------------------------------------------------------------

    def run_cost(self, run_id: str) -> RunCost:
        """What ``run_id`` cost (all zeros when the ledger has no entry for it)."""
        model = _ce.kind == "model"
        stmt = select(
            func.coalesce(func.max(_ce.workflow), ""),
            *_ENTRY_TOTALS,
            _sum(_flag(and_(model, ~_ce.ok))),
            _sum(_flag(and_(_ce.kind == "tool", ~_ce.ok))),
            _sum(case((model, _ce.latency_s), else_=0.0)),
        ).where(_ce.run_id == run_id)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).one()
        totals = _Totals.of(row[1:9])
        return RunCost(
            run_id=run_id,
            workflow=str(row[0]),
            cost_usd=totals.cost_usd,
            model_calls=totals.model_calls,
            failed_model_calls=int(row[9]),
            tool_calls=totals.tool_calls,
            tool_errors=int(row[10]),
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            cached_input_tokens=totals.cached_input_tokens,
            cache_hits=totals.cache_hits,
            model_latency_s=float(row[11]),
            estimate=totals.estimate,
        )

    # -- workflows -------------------------------------------------------------------------

    def by_workflow(
        self, since: float, until: float | None = None, *, include_eval: bool = False
    ) -> list[WorkflowCost]:
        """Each workflow's runs, outcomes and spend in ``[since, until)`` (until: now).

        Sorted by spend, largest first (then by name). Eval trials (`agent-eval run`) are
        left out unless ``include_eval``, as in every roll-up here.
        """
        found = self._window(
            since, time.time() if until is None else until, None, include_eval=include_eval
        )
        return sorted(found.values(), key=lambda w: (-w.cost_usd, w.workflow))

    def _window(
        self, since: float, until: float, workflow: str | None, *, include_eval: bool = False
    ) -> dict[str, WorkflowCost]:
        in_window = and_(_ce.at >= since, _ce.at < until)
        run_window = and_(runs.c.started_at >= since, runs.c.started_at < until)
        if not include_eval:
            in_window = and_(in_window, _ce.purpose == "production")
            run_window = and_(run_window, runs.c.purpose == "production")
        if workflow is not None:
            in_window = and_(in_window, _ce.workflow == workflow)
            run_window = and_(run_window, runs.c.workflow == workflow)
        spend = select(_ce.workflow, *_ENTRY_TOTALS).where(in_window).group_by(_ce.workflow)
        outcomes = (
            select(
                runs.c.workflow,
                func.count(),
                _sum(_flag(runs.c.status.in_(_ENDED))),
                _sum(_flag(runs.c.status == "completed")),
            )
            .where(run_window)
            .group_by(runs.c.workflow)
        )
        # runs the `runs` table does not know (recorded without an audit trail)
        unknown = (
            select(_ce.workflow, func.count(func.distinct(_ce.run_id)))
            .select_from(cost_entries.outerjoin(runs, runs.c.run_id == _ce.run_id))
            .where(in_window, runs.c.run_id.is_(None))
            .group_by(_ce.workflow)
        )
        totals: dict[str, _Totals] = {}
        counts: dict[str, list[int]] = {}
        with self._engine.connect() as conn:
            for row in conn.execute(spend):
                totals[str(row[0])] = _Totals.of(row[1:])
            for name, count, ended, ok in conn.execute(outcomes):
                counts.setdefault(str(name), [0, 0, 0])
                counts[str(name)] = [int(count), int(ended), int(ok)]
            for name, count in conn.execute(unknown):
                counts.setdefault(str(name), [0, 0, 0])[0] += int(count)
        names = set(totals) | set(counts)
        if workflow is not None:
            names.add(workflow)
        return {
            name: _workflow_cost(name, totals.get(name, _Totals()), *counts.get(name, [0, 0, 0]))
            for name in names
        }

    # -- days and models -------------------------------------------------------------------

    def by_day(
        self,
        workflow: str | None,
        days: int,
        now: float | None = None,
        *,
        include_eval: bool = False,
    ) -> list[DayCost]:
        """The last ``days`` UTC days up to and including today, oldest first, zero-filled.

        Args:
            workflow: One workflow, or None for all of them.
            days: How many days (>= 1).
            now: The time "today" is taken from (default: now).
        """
        if days < 1:
            raise ValueError("days must be >= 1")
        today = _utc_day(time.time() if now is None else now)
        first = today - timedelta(days=days - 1)
        since = _day_start(first)
        until = _day_start(today + timedelta(days=1))
        if self._engine.dialect.name == "sqlite":
            # `at` is positive, and SQLite's CAST truncates: a floor
            index: Any = cast((_ce.at - since) / _DAY, Integer)
        else:
            index = cast(func.floor((_ce.at - since) / _DAY), BigInteger)
        index = index.label("day_index")
        condition = and_(_ce.at >= since, _ce.at < until)
        if workflow is not None:
            condition = and_(condition, _ce.workflow == workflow)
        if not include_eval:
            condition = and_(condition, _ce.purpose == "production")
        stmt = (
            select(index, func.count(func.distinct(_ce.run_id)), *_ENTRY_TOTALS)
            .where(condition)
            .group_by(index)
        )
        found: dict[int, tuple[int, _Totals]] = {}
        with self._engine.connect() as conn:
            for row in conn.execute(stmt):
                found[int(row[0])] = (int(row[1]), _Totals.of(row[2:]))
        result = []
        for i in range(days):
            count, t = found.get(i, (0, _Totals()))
            result.append(
                DayCost(
                    day=first + timedelta(days=i),
                    runs=count,
                    cost_usd=t.cost_usd,
                    model_calls=t.model_calls,
                    tool_calls=t.tool_calls,
                    input_tokens=t.input_tokens,
                    output_tokens=t.output_tokens,
                    cached_input_tokens=t.cached_input_tokens,
                    cache_hits=t.cache_hits,
                    estimate=t.estimate,
                )
            )
        return result

    def daily_spend(
        self, workflow: str | None, day: date | None = None, *, include_eval: bool = False
    ) -> float:
        """Spend on one UTC day (default: today), of one workflow or (None) of all."""
        day = _utc_day(time.time()) if day is None else day
        since = _day_start(day)
        condition = and_(_ce.at >= since, _ce.at < since + _DAY)
        if not include_eval:
            condition = and_(condition, _ce.purpose == "production")
        if workflow is not None:
            condition = and_(condition, _ce.workflow == workflow)
        with self._engine.connect() as conn:
            return float(conn.execute(select(_sum(_ce.cost_usd)).where(condition)).scalar_one())

    def by_model(
        self, since: float, until: float | None = None, *, include_eval: bool = False
    ) -> list[ModelCost]:
        """Each model's calls and spend in ``[since, until)``, largest spend first."""
        until = time.time() if until is None else until
        purposes = ("production", "eval") if include_eval else ("production",)
        stmt = (
            select(
                _ce.model,
                func.count(),
                _sum(_flag(~_ce.ok)),
                _sum(_flag(_ce.cache_hit)),
                _sum(_ce.attempts),
                _sum(_ce.input_tokens),
                _sum(_ce.output_tokens),
                _sum(_ce.cached_input_tokens),
                _sum(_ce.cost_usd),
                func.coalesce(func.avg(_ce.latency_s), 0.0),
                func.coalesce(func.max(_flag(_ce.estimate)), 0),
            )
            .where(_ce.kind == "model", _ce.at >= since, _ce.at < until, _ce.purpose.in_(purposes))
            .group_by(_ce.model)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        found = [
            ModelCost(
                model=str(r[0] or ""),
                calls=int(r[1]),
                failed_calls=int(r[2]),
                cache_hits=int(r[3]),
                attempts=int(r[4]),
                input_tokens=int(r[5]),
                output_tokens=int(r[6]),
                cached_input_tokens=int(r[7]),
                cost_usd=float(r[8]),
                mean_latency_s=float(r[9]),
                estimate=bool(r[10]),
            )
            for r in rows
        ]
        return sorted(found, key=lambda m: (-m.cost_usd, m.model))

    # -- drift -----------------------------------------------------------------------------

    def drift(
        self,
        workflow: str,
        now: float | None = None,
        *,
        window_days: int = 7,
        success_drop_points: float = 5.0,
        cost_rise: float = 0.25,
        include_eval: bool = False,
    ) -> Drift:
        """Compare the last ``window_days`` days with the ``window_days`` before them.

        Args:
            workflow: The workflow.
            now: The end of the recent window (default: now).
            window_days: The length of each window, in days.
            success_drop_points: Alert when the success rate falls by more than this many
                percentage points.
            cost_rise: Alert when the cost per successful task grows by more than this
                ratio (0.25: 25 %).
        """
        if window_days < 1:
            raise ValueError("window_days must be >= 1")
        end = time.time() if now is None else now
        span = window_days * _DAY
        current = self._window(end - span, end, workflow, include_eval=include_eval)[workflow]
        previous = self._window(end - 2 * span, end - span, workflow, include_eval=include_eval)[
            workflow
        ]
        alerts: list[DriftAlert] = []
        success_change: float | None = None
        if current.success_rate is not None and previous.success_rate is not None:
            success_change = (current.success_rate - previous.success_rate) * 100.0
            if -success_change > success_drop_points:
                alerts.append(
                    DriftAlert(
                        "success_rate",
                        previous.success_rate,
                        current.success_rate,
                        success_change,
                        success_drop_points,
                        f"`{workflow}`: success rate fell from {previous.success_rate:.1%} "
                        f"to {current.success_rate:.1%} ({success_change:+.1f} points; "
                        f"alert past -{success_drop_points:g})",
                    )
                )
        cost_change: float | None = None
        if (
            current.cost_per_success is not None
            and previous.cost_per_success is not None
            and previous.cost_per_success > 0
        ):
            cost_change = current.cost_per_success / previous.cost_per_success - 1.0
            if cost_change > cost_rise:
                alerts.append(
                    DriftAlert(
                        "cost_per_success",
                        previous.cost_per_success,
                        current.cost_per_success,
                        cost_change,
                        cost_rise,
                        f"`{workflow}`: cost per successful task rose from "
                        f"${previous.cost_per_success:.4f} to ${current.cost_per_success:.4f} "
                        f"({cost_change:+.0%}; alert past +{cost_rise:.0%})",
                    )
                )
        return Drift(workflow, current, previous, success_change, cost_change, alerts)


def _workflow_cost(name: str, t: _Totals, count: int, ended: int, ok: int) -> WorkflowCost:
    return WorkflowCost(
        workflow=name,
        runs=count,
        ended_runs=ended,
        successful_runs=ok,
        success_rate=ok / ended if ended else None,
        cost_usd=t.cost_usd,
        cost_per_success=t.cost_usd / ok if ok else None,
        model_calls=t.model_calls,
        tool_calls=t.tool_calls,
        input_tokens=t.input_tokens,
        output_tokens=t.output_tokens,
        cached_input_tokens=t.cached_input_tokens,
        cache_hits=t.cache_hits,
        estimate=t.estimate,
    )
