"""Each workflow's autonomy stage, kept in the store with its history, moved on evidence.

The seed's rollout: read-only first, then drafts, then writes with approval, then writes in
scope; "only expand autonomy when the data stays stable". `promote` moves a workflow one
stage up, and only with the evidence, all of it about the policy at the new stage (evidence
made under another policy version is named, and does not count): a passing preflight
(budget and cost tracked, no drift, eval reports passing, production success, approvals,
least privilege, caps); the eval gate on the latest report of each suite, which called
every tool of the new stage; the shadow report of that policy over the production window
when it ran in shadow (else its replay over the window), denying nothing the live policy
let run; and a stable window (`opsgate.autonomy._evidence`). It refuses otherwise, naming
what is missing. `demote` is immediate.
Every change is a row of ``workflow_stages`` (the gateway reads the latest: see
`opsgate.gateway.StoreStageSource`) and an audit event with its actor and evidence.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select

from opsgate.autonomy._evidence import eval_gate_row, policy_row, stability_row
from opsgate.autonomy._preflight import PreflightRow, preflight
from opsgate.errors import ConfigError
from opsgate.policy import STAGES, CompiledPolicy, Stage
from opsgate.recorder import Event, EventType, Recorder
from opsgate.store import Store, workflow_stages

__all__ = [
    "PromotionRefused",
    "StageChange",
    "current_stage",
    "demote",
    "promote",
    "promotion_evidence",
    "stage_history",
]


@dataclass(frozen=True, slots=True)
class StageChange:
    """One promotion or demotion."""

    workflow: str
    stage: str
    previous: str
    actor: str
    reason: str
    evidence: list[dict[str, Any]]
    policy_version: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        """JSON data."""
        return asdict(self)


class PromotionRefused(Exception):
    """The evidence does not hold; ``rows`` says which rows failed and why."""

    def __init__(self, workflow: str, stage: str, rows: list[PreflightRow]) -> None:
        self.rows = rows
        failing = "; ".join(f"{r.check}: {r.evidence}" for r in rows if not r.go)
        super().__init__(f"`{workflow}` stays below {stage}: {failing}")


def _row(r: Any) -> StageChange:
    return StageChange(
        r.workflow,
        r.stage,
        r.previous,
        r.actor,
        r.reason,
        orjson.loads(r.evidence),
        r.policy_version,
        float(r.at),
    )


def stage_history(store: Store, workflow: str) -> list[StageChange]:
    """The workflow's stage changes, oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(workflow_stages)
            .where(workflow_stages.c.workflow == workflow)
            .order_by(workflow_stages.c.id)
        ).all()
    return [_row(r) for r in rows]


def current_stage(store: Store | None, policy: CompiledPolicy, workflow: str) -> str:
    """The stage in force: the latest change in the store, else the policy file's.

    Raises:
        PolicyError: the policy has no such workflow.
    """
    stage = policy.stage(workflow)
    if store is None:
        return stage
    history = stage_history(store, workflow)
    return history[-1].stage if history else stage


def _next(stage: str) -> Stage | None:
    i = STAGES.index(stage)
    return STAGES[i + 1] if i + 1 < len(STAGES) else None


def promotion_evidence(
    policy: CompiledPolicy,
    workflow: str,
    store: Store,
    stage: Stage,
    *,
    window: str = "7d",
    budget_usd: float | None = None,
    suites: Sequence[str] = (),
    window_days: int = 7,
    now: float | None = None,
    **preflight_options: Any,
) -> list[PreflightRow]:
    """The rows a promotion to ``stage`` needs (see the module): the preflight of the policy
    at that stage, its eval gate, its shadow report (or replay) over the production
    ``window``, and the stability of the last ``window_days`` against the ones before."""
    candidate = policy.with_stage(workflow, stage)
    table = preflight(
        candidate,
        workflow,
        store,
        budget_usd=budget_usd,
        suites=suites,
        window_days=window_days,
        now=now,
        **preflight_options,
    )
    rows = list(table.rows)
    rows.append(eval_gate_row(store, candidate, workflow, stage, suites))
    rows.append(policy_row(store, candidate, workflow, stage, window))
    rows.append(
        stability_row(store, workflow, window_days=window_days, budget_usd=budget_usd, now=now)
    )
    return rows


def _record(
    store: Store,
    recorder: Recorder,
    change: StageChange,
) -> StageChange:
    """Audit the change (an event of its own, with actor and evidence), then keep it."""
    event = Event(
        EventType.STAGE_CHANGED,
        f"stage-{uuid.uuid4().hex}",
        0,
        change.at,
        change.as_dict(),
    )
    recorder.record(event)
    with store.engine.begin() as conn:
        conn.execute(
            insert(workflow_stages).values(
                workflow=change.workflow,
                stage=change.stage,
                previous=change.previous,
                actor=change.actor,
                reason=change.reason,
                evidence=orjson.dumps(change.evidence).decode(),
                policy_version=change.policy_version,
                at=change.at,
            )
        )
    return change


def promote(
    policy: CompiledPolicy,
    workflow: str,
    store: Store,
    recorder: Recorder,
    *,
    actor: str,
    to: str | None = None,
    reason: str = "",
    window: str = "7d",
    **preflight_options: Any,
) -> StageChange:
    """Move ``workflow`` one stage up, on the evidence (see the module).

    Raises:
        ConfigError: no actor, an unknown stage, a stage that is not the next one.
        PromotionRefused: the evidence does not hold (nothing changed).
    """
    if not actor.strip():
        raise ConfigError("a promotion names who makes it (--as)")
    now = current_stage(store, policy, workflow)
    following = _next(now)
    if to is not None and to not in STAGES:
        raise ConfigError(f"unknown stage `{to}` (stages: {', '.join(STAGES)})")
    if following is None:
        raise ConfigError(f"`{workflow}` is at {now}, the last stage")
    if to is not None and to != following:
        raise ConfigError(
            f"`{workflow}` is at {now}: it goes to {following} next, not {to} (one stage a time)"
        )
    rows = promotion_evidence(
        policy, workflow, store, following, window=window, **preflight_options
    )
    if not all(r.go for r in rows):
        raise PromotionRefused(workflow, following, rows)
    change = StageChange(
        workflow,
        following,
        now,
        actor.strip(),
        reason,
        [asdict(r) for r in rows],
        policy.with_stage(workflow, following).version,
        time.time(),
    )
    return _record(store, recorder, change)


def demote(
    policy: CompiledPolicy,
    workflow: str,
    store: Store,
    recorder: Recorder,
    *,
    to: str,
    actor: str,
    reason: str,
    evidence: Sequence[Mapping[str, Any]] = (),
) -> StageChange:
    """Move ``workflow`` down to ``to`` at once (no evidence needed to do less; what made
    it, such as an alert's firing, is kept as ``evidence``).

    Raises:
        ConfigError: no actor or reason, an unknown stage, one that is not lower.
    """
    if not actor.strip() or not reason.strip():
        raise ConfigError("a demotion names who makes it (--as) and why (--reason)")
    lower = next((s for s in STAGES if s == to), None)
    if lower is None:
        raise ConfigError(f"unknown stage `{to}` (stages: {', '.join(STAGES)})")
    now = current_stage(store, policy, workflow)
    if STAGES.index(lower) >= STAGES.index(now):
        raise ConfigError(f"`{workflow}` is at {now}: {to} is not a lower stage")
    change = StageChange(
        workflow,
        to,
        now,
        actor.strip(),
        reason,
        [dict(e) for e in evidence],
        policy.with_stage(workflow, lower).version,
        time.time(),
    )
    return _record(store, recorder, change)
