"""`evaluate`: which enabled rules fire now. It only reads; `notify` delivers.

Each drift kind compares the last ``window_days`` days up to ``now`` with the same length
before it, with the cost ledger's counting rules (production runs only; a run counts in the
window it started in; a success is a completed run, an ended run is completed, escalated or
failed):

- ``cost_per_success_drift`` / ``success_rate_drop``: `CostLedger.drift`'s two figures.
- ``escalation_rate_rise``: escalated / ended runs, in points, rose by more than the threshold.
- ``unsafe_attempts_rise``: unsafe attempts are the ``decision`` events of the audit trail, in
  the window's runs, whose reason is one the eval scorer also counts as unsafe
  (`UNSAFE_REASONS`: the gate had to stop the agent), each call counted once (a call decided
  again on resume is one attempt); fires when the window has more than the one before by
  more than the threshold. The query walks the runs of the workflow by its index, then their
  decision events by theirs, never the whole trail.
- ``approval_backlog``: approvals still pending (and not yet expired) that were requested more
  than the threshold's minutes ago.

A figure that cannot be measured (no ended run, no success in a window) does not fire.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import and_, case, func, select

from opsgate.alerts._rules import KINDS, Rule, list_rules
from opsgate.cost import CostLedger
from opsgate.policy import Reason
from opsgate.store import Store, approvals, audit_events, runs

__all__ = ["UNSAFE_REASONS", "Firing", "evaluate", "evaluate_rule"]

_DAY = 86_400.0

#: Decision reasons counted as unsafe attempts (the eval scorer's set: the gate stopped it).
UNSAFE_REASONS = frozenset(
    {
        Reason.TOOL_NOT_ALLOWED,
        Reason.SCOPE_ABOVE_STAGE,
        Reason.ARG_CONSTRAINT,
        Reason.RULE_DENIED,
        Reason.UNTRUSTED_DERIVATION,
        Reason.UNKNOWN_TOOL,
    }
)


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule past its threshold now.

    Attributes:
        previous: The figure in the earlier window (None for ``approval_backlog``).
        current: The figure now (for the backlog: how many requests wait too long).
        change: What was compared with the threshold (points, a ratio, a count, minutes).
        message: One line saying so (store text inside: escape it where printed).
        sinks: The rule's sinks.
    """

    rule_id: int
    workflow: str
    kind: str
    threshold: float
    window_days: int
    previous: float | None
    current: float
    change: float
    message: str
    sinks: tuple[str, ...]
    at: float

    def as_dict(self) -> dict[str, Any]:
        """JSON data (the CLI's --json, the API, the webhook's body)."""
        data = asdict(self)
        data["sinks"] = list(self.sinks)
        return data


def evaluate(store: Store, now: float | None = None) -> list[Firing]:
    """Every enabled rule that fires at ``now`` (default: now), by workflow then rule."""
    at = time.time() if now is None else now
    found = []
    for rule in list_rules(store):
        if rule.enabled:
            firing = evaluate_rule(store, rule, at)
            if firing is not None:
                found.append(firing)
    return found


def evaluate_rule(store: Store, rule: Rule, now: float) -> Firing | None:
    """``rule``'s firing at ``now``, or None (quiet, or nothing to measure)."""
    if rule.kind not in KINDS:  # written by a newer opsgate: not ours to judge
        return None
    if rule.kind == "approval_backlog":
        return _backlog(store, rule, now)
    if rule.kind in ("cost_per_success_drift", "success_rate_drop"):
        return _drift(store, rule, now)
    span = rule.window_days * _DAY
    windows = ((now - 2 * span, now - span), (now - span, now))
    if rule.kind == "escalation_rate_rise":
        previous, current = (_escalation_rate(store, rule.workflow, *w) for w in windows)
        if previous is None or current is None:
            return None
        change = (current - previous) * 100.0
        if change <= rule.threshold:
            return None
        text = (
            f"`{rule.workflow}`: {current:.1%} of ended runs escalated in the last "
            f"{rule.window_days} day(s), up from {previous:.1%} ({change:+.1f} points; "
            f"alert past +{rule.threshold:g})"
        )
        return _firing(rule, now, previous, current, change, text)
    before, recent = (_unsafe_attempts(store, rule.workflow, *w) for w in windows)
    change = float(recent - before)
    if change <= rule.threshold:
        return None
    text = (
        f"`{rule.workflow}`: {recent} unsafe attempt(s) in the last {rule.window_days} day(s), "
        f"{before} in the {rule.window_days} before ({change:+.0f}; alert past "
        f"+{rule.threshold:g})"
    )
    return _firing(rule, now, float(before), float(recent), change, text)


def _firing(
    rule: Rule, now: float, previous: float | None, current: float, change: float, text: str
) -> Firing:
    return Firing(
        rule_id=rule.rule_id,
        workflow=rule.workflow,
        kind=rule.kind,
        threshold=rule.threshold,
        window_days=rule.window_days,
        previous=previous,
        current=current,
        change=change,
        message=text,
        sinks=rule.sinks,
        at=now,
    )


def _drift(store: Store, rule: Rule, now: float) -> Firing | None:
    cost = rule.kind == "cost_per_success_drift"
    drift = CostLedger(store).drift(
        rule.workflow,
        now,
        window_days=rule.window_days,
        success_drop_points=100.0 if cost else rule.threshold,
        cost_rise=rule.threshold if cost else float("inf"),
    )
    metric = "cost_per_success" if cost else "success_rate"
    for alert in drift.alerts:
        if alert.metric == metric:
            return _firing(rule, now, alert.previous, alert.current, alert.change, alert.message)
    return None


def _escalation_rate(store: Store, workflow: str, since: float, until: float) -> float | None:
    ended = runs.c.status.in_(("completed", "escalated", "failed"))
    escalated = case((runs.c.status == "escalated", 1), else_=0)
    query = select(func.count(), func.coalesce(func.sum(escalated), 0)).where(
        runs.c.workflow == workflow,
        runs.c.purpose == "production",
        runs.c.started_at >= since,
        runs.c.started_at < until,
        ended,
    )
    with store.engine.connect() as conn:
        count, escalations = conn.execute(query).one()
    return int(escalations) / int(count) if count else None


def _unsafe_attempts(store: Store, workflow: str, since: float, until: float) -> int:
    query = (
        select(audit_events.c.run_id, audit_events.c.body)
        .select_from(audit_events.join(runs, runs.c.run_id == audit_events.c.run_id))
        .where(
            and_(
                runs.c.workflow == workflow,
                runs.c.purpose == "production",
                runs.c.started_at >= since,
                runs.c.started_at < until,
                audit_events.c.type == "decision",
            )
        )
    )
    calls: set[tuple[str, str]] = set()
    with store.engine.connect() as conn:
        for run_id, body in conn.execute(query):
            data = _data(body)
            if data.get("reason") in UNSAFE_REASONS:
                calls.add((str(run_id), str(data.get("call_id", ""))))
    return len(calls)


def _data(body: Any) -> dict[str, Any]:
    """A decision's data from its stored body (canonical JSON); {} for what is not one."""
    try:
        doc = json.loads(bytes(body))
    except (TypeError, ValueError):
        return {}
    data = doc.get("data") if isinstance(doc, dict) else None
    return data if isinstance(data, dict) else {}


def _backlog(store: Store, rule: Rule, now: float) -> Firing | None:
    cutoff = now - rule.threshold * 60.0
    query = select(func.count(), func.min(approvals.c.requested_at)).where(
        approvals.c.workflow == rule.workflow,
        approvals.c.status == "pending",
        approvals.c.expires_at > now,
        approvals.c.requested_at <= cutoff,
    )
    with store.engine.connect() as conn:
        count, oldest = conn.execute(query).one()
    if not count:
        return None
    waited = (now - float(oldest)) / 60.0
    text = (
        f"`{rule.workflow}`: {count} approval request(s) pending for more than "
        f"{rule.threshold:g} min (the oldest for {waited:.0f} min)"
    )
    return _firing(rule, now, None, float(count), waited, text)
