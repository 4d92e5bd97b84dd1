"""`shadow_report`: what a candidate policy, run in shadow beside the live one, would
have decided otherwise.

In shadow mode the gateway asks a candidate policy too (it never acts on its answer) and
records a ``shadow_decision`` event right after the ``decision`` of every call where the
two disagree. This module only reads those events back and counts them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select

from opsgate.errors import AuditIntegrityError
from opsgate.replay._window import RecordedRun, recorded_runs, since_time
from opsgate.store import Store, audit_events

__all__ = ["SHADOW_EVENT", "ShadowDifference", "ShadowReport", "ShadowRun", "shadow_report"]

#: The event type shadow mode records (`opsgate.recorder.EventType.SHADOW_DECISION`).
SHADOW_EVENT = "shadow_decision"
_BATCH = 500  # run ids per query (well under every driver's parameter limit)


@dataclass(frozen=True, slots=True)
class ShadowDifference:
    """One call the candidate policy decided otherwise than the live one.

    Attributes:
        run_id: The run.
        workflow: Its workflow.
        call_id: The call.
        tool: The tool proposed.
        at: When (unix time).
        live: The live decision: ``effect``, ``reason``, ``policy_version``.
        candidate: The candidate's: ``effect``, ``reason``, ``rule``, ``message``,
            ``policy_version``.
    """

    run_id: str
    workflow: str
    call_id: str
    tool: str
    at: float
    live: Mapping[str, str]
    candidate: Mapping[str, str]

    @property
    def change(self) -> str:
        """``live effect -> candidate effect`` (``allow -> deny``)."""
        return f"{self.live['effect']} -> {self.candidate['effect']}"

    def as_dict(self) -> dict[str, Any]:
        """JSON data (the ``--json`` schema's ``differences`` items)."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "call_id": self.call_id,
            "tool": self.tool,
            "at": self.at,
            "change": self.change,
            "live": dict(self.live),
            "candidate": dict(self.candidate),
        }


@dataclass(frozen=True, slots=True)
class ShadowRun:
    """A run where the candidate disagreed at least once."""

    run_id: str
    workflow: str
    started_at: float
    differences: int

    def as_dict(self) -> dict[str, Any]:
        """JSON data."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "started_at": self.started_at,
            "differences": self.differences,
        }


@dataclass(frozen=True, slots=True)
class ShadowReport:
    """The disagreements of a window, newest first.

    Attributes:
        since: Start of the window (unix time; runs that started then or later).
        workflow: The workflow asked for, if one was.
        include_eval: Whether agent-eval trials were read too.
        runs_read: Runs of the window.
        differences: Every disagreement, newest first.
        runs: The runs concerned, newest first.
    """

    since: float
    workflow: str | None
    include_eval: bool
    runs_read: int
    differences: tuple[ShadowDifference, ...]
    runs: tuple[ShadowRun, ...]

    @property
    def by_tool(self) -> dict[str, int]:
        """Disagreements per tool, most first."""
        return _ranked(Counter(d.tool for d in self.differences))

    @property
    def by_change(self) -> dict[str, int]:
        """Disagreements per ``live -> candidate`` effect, most first."""
        return _ranked(Counter(d.change for d in self.differences))

    @property
    def candidates(self) -> list[str]:
        """The candidate policy versions seen (more than one: the candidate changed)."""
        return sorted({d.candidate["policy_version"] for d in self.differences})

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document (stable: fields are added, never renamed)."""
        return {
            "kind": "opsgate.shadow_report",
            "version": 1,
            "since": self.since,
            "workflow": self.workflow,
            "include_eval": self.include_eval,
            "summary": {
                "runs_read": self.runs_read,
                "runs": len(self.runs),
                "differences": len(self.differences),
                "by_tool": self.by_tool,
                "by_change": self.by_change,
                "candidate_versions": self.candidates,
            },
            "runs": [r.as_dict() for r in self.runs],
            "differences": [d.as_dict() for d in self.differences],
        }


def shadow_report(
    store: Store,
    *,
    since: float | str,
    workflow: str | None = None,
    include_eval: bool = False,
) -> ShadowReport:
    """Count the ``shadow_decision`` events of the runs of a window.

    Raises:
        SuiteError: a malformed ``since``.
        AuditIntegrityError: a stored event's columns do not say what its body says.
    """
    start = since_time(since)
    window = recorded_runs(store, since=start, workflow=workflow, include_eval=include_eval)
    by_id = {r.run_id: r for r in window}
    found: list[ShadowDifference] = []
    for run_id, at, data in _events(store, list(by_id)):
        found.append(_difference(by_id[run_id], at, data))
    found.sort(key=lambda d: (d.at, d.run_id, d.call_id), reverse=True)
    per_run = Counter(d.run_id for d in found)
    concerned = sorted(
        (by_id[run_id] for run_id in per_run), key=lambda r: (r.started_at, r.run_id), reverse=True
    )
    return ShadowReport(
        since=start,
        workflow=workflow,
        include_eval=include_eval,
        runs_read=len(window),
        differences=tuple(found),
        runs=tuple(
            ShadowRun(r.run_id, r.workflow, r.started_at, per_run[r.run_id]) for r in concerned
        ),
    )


def _events(store: Store, run_ids: Sequence[str]) -> Iterator[tuple[str, float, dict[str, Any]]]:
    """The shadow events of ``run_ids``: only rows of that type are read (a run's other
    events are most of the trail), each body checked against the columns selected by."""
    for i in range(0, len(run_ids), _BATCH):
        query = (
            select(audit_events.c.seq, audit_events.c.run_id, audit_events.c.body)
            .where(
                audit_events.c.type == SHADOW_EVENT,
                audit_events.c.run_id.in_(run_ids[i : i + _BATCH]),
            )
            .order_by(audit_events.c.seq)
        )
        with store.engine.connect() as conn:
            rows = conn.execute(query).all()
        for seq, run_id, body in rows:
            doc = _decoded(seq, body)
            if doc.get("run_id") != run_id or doc.get("type") != SHADOW_EVENT:
                raise AuditIntegrityError(
                    f"event {seq!r}'s columns do not say what its hashed body says: the "
                    "row was edited (run `opsgate audit verify`)",
                    seq=seq if isinstance(seq, int) else None,
                )
            data = doc.get("data")
            at = doc.get("at")
            yield (
                run_id,
                float(at) if isinstance(at, int | float) else 0.0,
                (data if isinstance(data, dict) else {}),
            )


def _decoded(seq: Any, body: Any) -> dict[str, Any]:
    where = seq if isinstance(seq, int) else None
    if not isinstance(body, bytes | bytearray | memoryview):
        raise AuditIntegrityError(f"event {seq!r}'s body is not bytes: retyped", seq=where)
    try:
        doc = orjson.loads(bytes(body))
    except orjson.JSONDecodeError:
        raise AuditIntegrityError(f"event {seq!r}'s body is not JSON", seq=where) from None
    if not isinstance(doc, dict):
        raise AuditIntegrityError(f"event {seq!r}'s body is not an event", seq=where)
    return doc


def _difference(run: RecordedRun, at: float, data: Mapping[str, Any]) -> ShadowDifference:
    def text(key: str) -> str:
        value = data.get(key)
        return "" if value is None else str(value)

    return ShadowDifference(
        run_id=run.run_id,
        workflow=run.workflow,
        call_id=text("call_id"),
        tool=text("tool"),
        at=at,
        live={
            "effect": text("live_effect"),
            "reason": text("live_reason"),
            "policy_version": text("live_policy_version"),
        },
        candidate={
            "effect": text("effect"),
            "reason": text("reason"),
            "rule": text("rule"),
            "message": text("message"),
            "policy_version": text("policy_version"),
        },
    )


def _ranked(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
