"""The `runs` table: one row per run, kept by the events that tell its story.

Written only here (the audit recorder's appends call `apply_run_events` in their own
transaction); read by `opsgate runs list`, the cost roll-ups and the console.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opsgate.recorder import Event, EventType

__all__ = ["apply_run_events"]


def apply_run_events(cursor: Any, events: Sequence[Event], *, postgresql: bool) -> None:
    """Keep the `runs` table in step with ``events``, on the caller's open DB-API cursor (the
    audit log calls it inside the transaction that appends those events, so a run's row and
    its record never disagree)."""
    mark = "%s" if postgresql else "?"
    for event in events:
        kind = event.type
        d = event.data
        if kind == EventType.RUN_STARTED:
            cursor.execute(
                "INSERT INTO runs (run_id, workflow, invoker, agent_id, policy_version, "
                "model_route, status, reason, cost_usd, tool_calls, started_at, purpose) "
                f"VALUES ({', '.join([mark] * 12)})",
                (
                    event.run_id,
                    d.get("workflow", ""),
                    d.get("invoker", ""),
                    d.get("agent_id", ""),
                    d.get("policy_version", ""),
                    d.get("model_route"),
                    "running",
                    "",
                    0.0,
                    0,
                    event.at,
                    "eval" if d.get("purpose") == "eval" else "production",
                ),
            )
        elif kind == EventType.RUN_ENDED:
            cursor.execute(
                f"UPDATE runs SET status = {mark}, reason = {mark}, cost_usd = {mark}, "
                f"tool_calls = {mark}, ended_at = {mark}, elapsed_s = {mark} "
                f"WHERE run_id = {mark}",
                (
                    d.get("status", "completed"),
                    d.get("reason", ""),
                    float(d.get("cost_usd", 0.0)),
                    int(d.get("tool_calls", 0)),
                    event.at,
                    d.get("elapsed_s"),
                    event.run_id,
                ),
            )
        elif kind in (
            EventType.APPROVAL_REQUESTED,
            EventType.APPROVAL_GRANTED,
            EventType.APPROVAL_DENIED,
        ):
            status = "awaiting_approval" if kind == EventType.APPROVAL_REQUESTED else "running"
            # an answer that comes after the run ended (it escalated while waiting) does not
            # bring it back: the row keeps how the run ended
            cursor.execute(
                f"UPDATE runs SET status = {mark} WHERE run_id = {mark} AND ended_at IS NULL",
                (status, event.run_id),
            )
