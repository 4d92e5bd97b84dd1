"""A real store for the alert tests, and what fills it: runs with their audit events
(through the real `AuditLog`, which keeps the `runs` table), spend rows, approval rows."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import insert

from opsgate.audit import AuditLog
from opsgate.recorder import Event, EventType
from opsgate.store import Store, approvals, cost_entries, open_store

DAY = 86_400.0
NOW = 1_800_000_000.0  # a fixed "now": windows are [NOW - 7d, NOW) and the 7 days before
RECENT = NOW - 2 * DAY  # a start in the current window
EARLIER = NOW - 9 * DAY  # a start in the previous window


class Recorder:
    """Writes what the alerts read, at chosen times."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.log = AuditLog(store)  # no signer: no checkpoints, appends only
        self._ids = itertools.count(1)

    def run(
        self,
        workflow: str,
        started_at: float,
        status: str = "completed",
        *,
        cost: float = 0.0,
        reasons: tuple[str, ...] = (),
        purpose: str = "production",
    ) -> str:
        """One run of ``workflow``: started, one decision per reason (own call ids), ended
        with ``status`` (or left running), and one model call's spend."""
        run_id = f"run-{next(self._ids)}"
        data = {"workflow": workflow, "invoker": "ana", "agent_id": "bot", "policy_version": "p"}
        if purpose == "eval":
            data["purpose"] = "eval"
        events = [Event(EventType.RUN_STARTED, run_id, 0, started_at, data)]
        for i, reason in enumerate(reasons):
            events.append(
                Event(
                    EventType.DECISION,
                    run_id,
                    len(events),
                    started_at + 1 + i,
                    {"call_id": f"c{i}", "tool": "pay", "reason": reason, "effect": "deny"},
                )
            )
        if status != "running":
            events.append(
                Event(EventType.RUN_ENDED, run_id, len(events), started_at + 60, {"status": status})
            )
        self.log.append(events)
        if cost:
            self.spend(run_id, workflow, started_at + 30, cost, purpose=purpose)
        return run_id

    def decision(self, run_id: str, seq: int, at: float, call_id: str, reason: str) -> None:
        """One more decision event in ``run_id`` (at its ``seq``)."""
        data = {"call_id": call_id, "tool": "pay", "reason": reason, "effect": "deny"}
        self.log.append([Event(EventType.DECISION, run_id, seq, at, data)])

    def spend(
        self, run_id: str, workflow: str, at: float, cost: float, purpose: str = "production"
    ) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                insert(cost_entries).values(
                    run_id=run_id,
                    workflow=workflow,
                    at=at,
                    kind="model",
                    role="act",
                    model="m",
                    input_tokens=10,
                    output_tokens=5,
                    cached_input_tokens=0,
                    cost_usd=cost,
                    estimate=False,
                    latency_s=0.1,
                    cache_hit=False,
                    attempts=1,
                    ok=True,
                    purpose=purpose,
                )
            )

    def approval(
        self,
        workflow: str,
        requested_at: float,
        *,
        expires_at: float | None = None,
        status: str = "pending",
    ) -> str:
        request_id = f"req-{next(self._ids)}"
        with self.store.engine.begin() as conn:
            conn.execute(
                insert(approvals).values(
                    request_id=request_id,
                    run_id="run-x",
                    call_id="c1",
                    workflow=workflow,
                    invoker="ana",
                    agent_id="bot",
                    tool="pay",
                    args=json.dumps({"amount": 80}),
                    decision="{}",
                    status=status,
                    requested_at=requested_at,
                    expires_at=expires_at if expires_at is not None else NOW + 3600,
                    run_state="{}",
                )
            )
        return request_id


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A fresh store on SQLite and on PostgreSQL."""
    with open_store(db_url) as opened:
        yield opened


@pytest.fixture
def sqlite_store(tmp_path: object) -> Iterator[Store]:
    """A fresh SQLite store (for what does not depend on the backend)."""
    with open_store(f"sqlite:///{tmp_path}/alerts.db") as opened:
        yield opened


@pytest.fixture
def rec(store: Store) -> Iterator[Recorder]:
    recorder = Recorder(store)
    yield recorder
    recorder.log.close()
