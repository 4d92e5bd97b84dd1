"""`DurableApprovalQueue`: approvals that survive the process that asked for them.

A call that needs a person is persisted with the exact proposed call and a snapshot of
its run (``awaiting_approval``). An approver with an identity approves or denies from any
process (`opsgate approvals`, the dashboard); the decision is written to the audit trail
at once. The run then resumes: in the process still waiting (it polls), or in another one
through `Gateway.resume`. The outcome of a decided request is claimed atomically
(``executed_at`` set where it was empty): an approved call runs at most once, and a run
goes on after its answer (approved, denied or expired) in exactly one process, whichever
gets there first; the others are told it was taken over (`ApprovalTakenOver`). A claimed
approval runs only once its grant is in the audit trail: when the approver stopped between
deciding and recording, the process that executes records it (write-ahead still holds).
Requests past their expiry can no longer be approved; a run waiting on one escalates.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError

from opsgate.errors import ApprovalError
from opsgate.gateway._approval import ApprovalAnswer, ApprovalRequest
from opsgate.recorder import Event, EventType, Recorder
from opsgate.store import Store, approvals, audit_events

__all__ = ["ApprovalRecord", "ApprovalTakenOver", "DurableApprovalQueue"]

#: How long a process about to execute an approved call waits for the approver's own
#: audit event before it records the grant itself (the approver stopped in between).
_GRANT_WAIT_S = 2.0


class ApprovalTakenOver(ApprovalError):
    """Another process claimed the outcome of this approval request first: the call ran
    (or the run went on) there, so the run is not this process's to continue or to end."""


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """One row of the approval queue."""

    request_id: str
    run_id: str
    call_id: str
    workflow: str
    invoker: str
    agent_id: str
    tool: str
    args: dict[str, Any]
    decision: dict[str, Any]
    status: str
    approver: str | None
    reason: str | None
    requested_at: float
    expires_at: float
    decided_at: float | None
    executed_at: float | None
    run_state: dict[str, Any]

    @classmethod
    def from_row(cls, row: Any) -> ApprovalRecord:
        """An ``approvals`` row as a record (for readers of the table, e.g. the console)."""
        return _record(row)


def _record(row: Any) -> ApprovalRecord:
    return ApprovalRecord(
        row.request_id,
        row.run_id,
        row.call_id,
        row.workflow,
        row.invoker,
        row.agent_id,
        row.tool,
        orjson.loads(row.args),
        orjson.loads(row.decision),
        row.status,
        row.approver,
        row.reason,
        row.requested_at,
        row.expires_at,
        row.decided_at,
        row.executed_at,
        orjson.loads(row.run_state),
    )


class DurableApprovalQueue:
    """The approval queue in the opsgate database (an `Approver`).

    Args:
        store: The open store.
        recorder: Where decisions are audited (the audit recorder). Required to decide.
        ttl_s: How long a request can be approved.
        poll_s: How often a waiting run looks for the answer.
    """

    persists = True  # the gateway hands this approver a snapshot of the run

    def __init__(
        self,
        store: Store,
        *,
        recorder: Recorder | None = None,
        ttl_s: float = 24 * 3600.0,
        poll_s: float = 0.25,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.ttl_s = ttl_s
        self.poll_s = poll_s

    # -- the Approver side ---------------------------------------------------------------

    async def request(self, request: ApprovalRequest) -> ApprovalAnswer:
        """Persist ``request``, then wait for a person's decision (polling the store).

        A waiting process that stops (Ctrl-C, a deploy, a crash) leaves the request
        pending, with the run's snapshot: a person can still decide it, and
        `Gateway.resume` then runs the call in any process. Only its time-to-live (or the
        gateway's own approval timeout, which calls `expire`) ends it as expired.
        """
        await asyncio.to_thread(self._insert, request)
        expires_at = request.requested_at + self.ttl_s
        while True:
            try:
                record = await asyncio.to_thread(self.load, request.request_id)
            except DBAPIError:
                # the database is restarting or out of reach: the request is kept there,
                # so keep waiting for it (the gateway's approval timeout still applies)
                if time.time() >= expires_at:
                    raise
                await asyncio.sleep(self.poll_s)
                continue
            if record.status != "pending":
                break
            if time.time() >= record.expires_at:
                await asyncio.to_thread(self.expire, request.request_id)
                raise TimeoutError(f"approval {request.request_id} expired")
            await asyncio.sleep(self.poll_s)
        return await asyncio.to_thread(self.answer_for, record)

    def answer_for(self, record: ApprovalRecord) -> ApprovalAnswer:
        """The answer a decided record gives, once its outcome is claimed by this caller.

        ``recorded`` is False when the approver's decision is not in the audit trail (it
        stopped between deciding and recording): the gateway then records it before the
        call runs.

        Raises:
            ApprovalTakenOver: another process claimed it first (the call ran there, or
                the run went on there).
        """
        if not self.claim(record.request_id):
            raise ApprovalTakenOver(
                f"approval request `{record.request_id}` was already claimed: its call already "
                "executed, or its run resumed, in another process"
            )
        approver = record.approver or "opsgate:unknown"
        if record.status == "expired":
            return ApprovalAnswer(False, "opsgate:expiry", "the request expired", recorded=True)
        recorded = self._decision_on_trail(record)
        return ApprovalAnswer(
            record.status == "approved", approver, record.reason or "", recorded=recorded
        )

    def _decision_on_trail(self, record: ApprovalRecord) -> bool:
        """Whether the audit trail holds the decision of ``record`` (waiting a little for
        the approver, which records it right after deciding)."""
        kind = "approval_granted" if record.status == "approved" else "approval_denied"
        deadline = time.monotonic() + _GRANT_WAIT_S
        while True:
            with self.store.engine.connect() as conn:
                bodies = conn.execute(
                    select(audit_events.c.body).where(
                        audit_events.c.run_id == record.run_id, audit_events.c.type == kind
                    )
                ).scalars()
                if any(
                    orjson.loads(bytes(body))["data"].get("request_id") == record.request_id
                    for body in bodies
                ):
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def run_ended(self, run_id: str) -> bool:
        """Whether the audit trail holds the end of run ``run_id`` (it cannot resume)."""
        with self.store.engine.connect() as conn:
            found = conn.execute(
                select(audit_events.c.seq)
                .where(audit_events.c.run_id == run_id, audit_events.c.type == "run_ended")
                .limit(1)
            ).first()
        return found is not None

    def _insert(self, request: ApprovalRequest) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                insert(approvals).values(
                    request_id=request.request_id,
                    run_id=request.run_id,
                    call_id=request.call_id,
                    workflow=request.workflow,
                    invoker=request.invoker,
                    agent_id=request.agent_id,
                    tool=request.tool,
                    args=orjson.dumps(request.args).decode(),
                    decision=orjson.dumps(
                        {
                            **request.decision.as_dict(),
                            "context": {
                                "request": request.request_text,
                                "origins": request.origins,
                            },
                        }
                    ).decode(),
                    status="pending",
                    requested_at=request.requested_at,
                    expires_at=request.requested_at + self.ttl_s,
                    run_state=orjson.dumps(request.run_state or {}).decode(),
                )
            )

    # -- the operator side ---------------------------------------------------------------

    def load(self, request_id: str) -> ApprovalRecord:
        """The request, or `ApprovalError` if there is none."""
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(approvals).where(approvals.c.request_id == request_id)
            ).first()
            if row is None and len(request_id) >= 4:
                rows = conn.execute(
                    select(approvals).where(approvals.c.request_id.like(request_id + "%"))
                ).all()
                row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise ApprovalError(f"no approval request `{request_id}`")
        return _record(row)

    def list(self, status: str | None = "pending") -> list[ApprovalRecord]:
        """Requests (pending by default), oldest first; expired ones are marked so."""
        now = time.time()
        with self.store.engine.begin() as conn:
            conn.execute(
                update(approvals)
                .where(approvals.c.status == "pending", approvals.c.expires_at <= now)
                .values(status="expired", decided_at=now)
            )
            query = select(approvals).order_by(approvals.c.requested_at)
            if status is not None:
                query = query.where(approvals.c.status == status)
            return [_record(r) for r in conn.execute(query)]

    def history(self, limit: int = 50) -> builtins.list[ApprovalRecord]:
        """The latest decided or expired requests, newest decision first (only ``limit``
        rows are read)."""
        query = (
            select(approvals)
            .where(approvals.c.status != "pending")
            .order_by(approvals.c.decided_at.desc(), approvals.c.request_id)
            .limit(limit)
        )
        with self.store.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query)]

    def decide(
        self, request_id: str, *, approved: bool, approver: str, reason: str = ""
    ) -> ApprovalRecord:
        """Approve or deny a pending request, as ``approver``; the decision is audited.

        Raises:
            ApprovalError: no identity, unknown request, already decided, or expired.
        """
        if not approver or not approver.strip():
            raise ApprovalError("an approval needs the approver's identity")
        if self.recorder is None:
            raise ApprovalError("this queue has no audit recorder; decisions must be audited")
        record = self.load(request_id)
        now = time.time()
        with self.store.engine.begin() as conn:
            done = conn.execute(
                update(approvals)
                .where(
                    approvals.c.request_id == record.request_id,
                    approvals.c.status == "pending",
                    approvals.c.expires_at > now,
                )
                .values(
                    status="approved" if approved else "denied",
                    approver=approver.strip(),
                    reason=reason,
                    decided_at=now,
                )
            )
        if done.rowcount != 1:
            current = self.load(record.request_id)
            if current.status == "pending":
                self.expire(record.request_id)
                raise ApprovalError(f"approval request `{record.request_id}` has expired")
            raise ApprovalError(
                f"approval request `{record.request_id}` is already {current.status}"
                + (f" by {current.approver}" if current.approver else "")
            )
        self.recorder.record(
            Event(
                EventType.APPROVAL_GRANTED if approved else EventType.APPROVAL_DENIED,
                record.run_id,
                -1,
                now,
                {
                    "call_id": record.call_id,
                    "request_id": record.request_id,
                    "tool": record.tool,
                    "approver": approver.strip(),
                    "reason": reason,
                    "via": "approval queue",
                },
            )
        )
        return self.load(record.request_id)

    def claim(self, request_id: str) -> bool:
        """Claim the outcome of a decided request (approved, denied or expired): running
        the approved call, or going on with the run after a denial or an expiry. True for
        exactly one caller; ``executed_at`` records when."""
        with self.store.engine.begin() as conn:
            done = conn.execute(
                update(approvals)
                .where(
                    approvals.c.request_id == request_id,
                    approvals.c.status.in_(("approved", "denied", "expired")),
                    approvals.c.executed_at.is_(None),
                )
                .values(executed_at=time.time())
            )
        return done.rowcount == 1

    def give_up(self, request_id: str) -> None:
        """The waiting run stops waiting (its approval timed out, or the approver failed):
        expire the request if it is still pending and claim its outcome, so that no process
        resumes a run that ends here.

        Raises:
            ApprovalTakenOver: another process claimed it first (the run went on there).
        """
        self.expire(request_id)
        if not self.claim(request_id):
            raise ApprovalTakenOver(
                f"approval request `{request_id}` was already claimed: its run went on in "
                "another process"
            )

    def expire(self, request_id: str) -> None:
        """Mark a still-pending request expired."""
        with self.store.engine.begin() as conn:
            conn.execute(
                update(approvals)
                .where(approvals.c.request_id == request_id, approvals.c.status == "pending")
                .values(status="expired", decided_at=time.time())
            )
