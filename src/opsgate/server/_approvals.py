"""The approvals inbox: pending requests with what a person needs to judge them, history,
and deciding as the logged-in token's name through `DurableApprovalQueue` (which audits
the decision at once).

Deciding twice the same way is idempotent: the second press finds the request already
decided by the same person the same way and answers with that one decision (one row, one
audit event); a different answer, or another person's, is a 409.

The inbox's reads (a page of pending requests, the history, the fatigue tallies: rows
decoded, redacted and tallied, milliseconds a request) are kept (`opsgate.server._kept`)
under the approvals' version: the number of pending requests, the newest one's time and
the newest decision's or expiry's, three index look-ups that change whenever the queue
adds, decides or expires a request; kept at most `_KEPT_S` seconds whatever happens (a row
written by hand with an old time; the fatigue window moving on). A pending request's
countdown is computed afresh on every read.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import func, select, tuple_

from opsgate.errors import ApprovalError
from opsgate.gateway import ApprovalRecord, DurableApprovalQueue
from opsgate.redaction import Redactor
from opsgate.server._console import Console, ConsoleError
from opsgate.server._kept import kept
from opsgate.server._runs import parse_cursor
from opsgate.store import Store, approvals

__all__ = [
    "ApprovalView",
    "Fatigue",
    "FatigueRow",
    "PendingPage",
    "approvals_version",
    "decide",
    "fatigue",
    "find_request",
    "history",
    "inbox",
    "kept_render",
    "pending_page",
    "pending_requests",
    "view",
]


@dataclass(frozen=True, slots=True)
class ApprovalView:
    """One request as the inbox shows it (every text field is hostile: escaped on render).

    Attributes:
        origins: Per argument, where its value came from (trust, source, sources, kind).
        expires_in: Seconds left to decide (0 when past).
    """

    record: ApprovalRecord
    request_text: str
    origins: dict[str, Any]
    rule: str
    why: str
    expires_in: float

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API (without the run's snapshot)."""
        r = self.record
        return {
            "request_id": r.request_id,
            "run_id": r.run_id,
            "call_id": r.call_id,
            "workflow": r.workflow,
            "invoker": r.invoker,
            "agent_id": r.agent_id,
            "tool": r.tool,
            "args": r.args,
            "origins": self.origins,
            "rule": self.rule,
            "why": self.why,
            "request": self.request_text,
            "status": r.status,
            "approver": r.approver,
            "reason": r.reason,
            "requested_at": r.requested_at,
            "expires_at": r.expires_at,
            "decided_at": r.decided_at,
            "expires_in": self.expires_in,
        }


def view(record: ApprovalRecord, redactor: Redactor | None = None) -> ApprovalView:
    """``record`` with its context unpacked. The queue keeps the invoker's request as it
    came; ``redactor`` masks it as the audit trail did. The call's arguments are shown
    exactly: they are what the person approves (as `opsgate approvals list` shows them)."""
    decision = record.decision
    context = decision.get("context") or {}
    request_text = str(context.get("request") or "")
    if redactor is not None:
        request_text = redactor.redact_text(request_text)
    return ApprovalView(
        record,
        request_text,
        dict(context.get("origins") or {}),
        str(decision.get("rule") or ""),
        str(decision.get("message") or ""),
        max(record.expires_at - time.time(), 0.0) if record.status == "pending" else 0.0,
    )


def _expire_stale(store: Store, scope: list[Any]) -> None:
    """Mark the requests of ``scope`` past their expiry so, through the queue (a read when
    none has expired: no write lock taken)."""
    with store.engine.connect() as conn:
        stale = conn.execute(
            select(approvals.c.request_id).where(*scope, approvals.c.expires_at <= time.time())
        ).scalars()
        expired = list(stale)
    queue = DurableApprovalQueue(store)
    for request_id in expired:
        queue.expire(request_id)


_KEPT_S = 10.0
T = TypeVar("T")


def _version(store: Store) -> tuple[Any, ...]:
    """The approvals' version: changes whenever the queue adds, decides or expires one."""
    pending = approvals.c.status == "pending"
    with store.engine.connect() as conn:
        waiting, newest = conn.execute(
            select(func.count(), func.max(approvals.c.requested_at)).where(pending)
        ).one()
        decided = conn.execute(select(func.max(approvals.c.decided_at))).scalar()
    return ("approvals", waiting, newest, decided)


def approvals_version(console: Console) -> tuple[Any, ...]:
    """The approvals' version once the pending requests past their expiry are marked so
    (what the inbox's reads are kept under: one look-up for a page's three reads)."""
    store = console.store()
    _expire_stale(store, [approvals.c.status == "pending"])
    return _version(store)


def kept_render(
    console: Console,
    key: tuple[Any, ...],
    version: tuple[Any, ...],
    render: Callable[[], T],
    *,
    max_age_s: float = _KEPT_S,
) -> T:
    """What ``render()`` made of a part of a page, kept under the approvals' ``version``
    like the reads under it (``key`` must hold whatever else the part shows: who asks, the
    second its countdowns were counted at, with a ``max_age_s`` of a second)."""
    return kept(console.store(), ("render", *key, *version), min(max_age_s, _KEPT_S), render)


def _counting_down(views: list[ApprovalView]) -> list[ApprovalView]:
    """``views`` with each pending request's time left as of now."""
    now = time.time()
    return [
        replace(v, expires_in=max(v.record.expires_at - now, 0.0))
        if v.record.status == "pending"
        else v
        for v in views
    ]


def pending_requests(console: Console, run_id: str | None = None) -> list[ApprovalView]:
    """Pending requests, oldest first (of one run, or all); the ones past their expiry are
    first marked so through the queue, as `opsgate approvals list` does.

    Read here rather than with `DurableApprovalQueue.list`, which takes the database's
    write lock on every call to expire what may have expired (on SQLite every viewer then
    queues on one lock) and reads every pending request even for one run's page.
    """
    store = console.store()
    scope = [approvals.c.status == "pending"]
    if run_id is not None:
        scope.append(approvals.c.run_id == run_id)

    def read() -> list[Any]:
        with store.engine.connect() as conn:
            return list(
                conn.execute(select(approvals).where(*scope).order_by(approvals.c.requested_at))
            )

    rows = read()
    if any(r.expires_at <= time.time() for r in rows):  # one read when none has expired
        _expire_stale(store, scope)
        rows = read()
    redactor = console.redactor()
    return [view(ApprovalRecord.from_row(r), redactor) for r in rows]


@dataclass(frozen=True, slots=True)
class PendingPage:
    """One page of the pending requests, oldest first: how many wait in all, and the cursor
    of the next page (None: the last)."""

    requests: list[ApprovalView]
    total: int
    next_cursor: str | None


def pending_page(
    console: Console,
    *,
    after: str | None = None,
    limit: int = 50,
    version: tuple[Any, ...] | None = None,
) -> PendingPage:
    """The inbox's page after ``after`` (``requested_at:request_id``, what the previous page
    gave): a keyset read on ``(requested_at, request_id)``, so a page costs the same with 50
    requests waiting or 5,000, and the count beside it is one indexed count. Kept under
    ``version`` (default: `approvals_version`, which marks the expired ones first).

    Raises:
        ConsoleError: 400 for a malformed ``after``.
    """
    cursor = None
    if after is not None:
        cursor = parse_cursor(after, option="after", shape="requested_at:request_id")
    version = version or approvals_version(console)
    found = kept(
        console.store(),
        ("pending_page", cursor, limit, *version),
        _KEPT_S,
        lambda: _pending_page(console, cursor, limit),
    )
    return replace(found, requests=_counting_down(found.requests))


def _pending_page(console: Console, after: tuple[float, str] | None, limit: int) -> PendingPage:
    scope = [approvals.c.status == "pending"]
    page = list(scope)
    if after is not None:
        page.append(tuple_(approvals.c.requested_at, approvals.c.request_id) > tuple_(*after))
    with console.store().engine.connect() as conn:
        total = int(conn.execute(select(func.count()).where(*scope)).scalar_one())
        rows = conn.execute(
            select(approvals)
            .where(*page)
            .order_by(approvals.c.requested_at, approvals.c.request_id)
            .limit(limit + 1)
        ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    redactor = console.redactor()
    cursor = f"{rows[-1].requested_at!r}:{rows[-1].request_id}" if more and rows else None
    return PendingPage([view(ApprovalRecord.from_row(r), redactor) for r in rows], total, cursor)


def history(
    console: Console, limit: int = 50, *, version: tuple[Any, ...] | None = None
) -> list[ApprovalView]:
    """The latest decided or expired requests, newest decision first (kept under
    ``version``, default the approvals' version now)."""

    def read() -> list[ApprovalView]:
        redactor = console.redactor()
        return [view(r, redactor) for r in DurableApprovalQueue(console.store()).history(limit)]

    version = version or _version(console.store())
    return kept(console.store(), ("history", limit, *version), _KEPT_S, read)


def inbox(
    console: Console, *, after: str | None = None, version: tuple[Any, ...] | None = None
) -> tuple[PendingPage, list[ApprovalView]]:
    """A page of the pending requests (oldest first) and the 50 latest decided or expired."""
    version = version or approvals_version(console)
    return pending_page(console, after=after, version=version), history(console, version=version)


def find_request(console: Console, request_id: str) -> ApprovalRecord:
    """The request ``request_id`` (exact id).

    Raises:
        ConsoleError: 404.
    """
    try:
        record = DurableApprovalQueue(console.store()).load(request_id)
    except ApprovalError:
        raise ConsoleError(404, f"no approval request `{request_id}`") from None
    if record.request_id != request_id:  # `load` takes prefixes; the console wants the id
        raise ConsoleError(404, f"no approval request `{request_id}`")
    return record


def decide(
    console: Console, request_id: str, *, approved: bool, who: str, reason: str
) -> tuple[ApprovalRecord, bool]:
    """Approve or deny as ``who``; returns the record and whether this call decided it
    (False: it was already decided the same way by ``who``).

    Raises:
        ConsoleError: 404 unknown, 409 decided otherwise or expired.
    """
    record = find_request(console, request_id)
    queue = DurableApprovalQueue(console.store(), recorder=console.recorder())
    try:
        return queue.decide(request_id, approved=approved, approver=who, reason=reason), True
    except ApprovalError as exc:
        current = queue.load(record.request_id)
        wanted = "approved" if approved else "denied"
        if current.status == wanted and current.approver == who.strip():
            return current, False
        raise ConsoleError(409, str(exc)) from None


@dataclass(frozen=True, slots=True)
class FatigueRow:
    """How one workflow's (or one tool's) requests were answered over the window.

    Attributes:
        approval_rate: approved / (approved + denied); None when none was decided.
        median_decide_s: The median of ``decided_at - requested_at`` over the approved and
            denied ones (expired ones were never decided); None when none was.
    """

    name: str
    requests: int
    approved: int
    denied: int
    expired: int
    pending: int
    approval_rate: float | None
    median_decide_s: float | None


@dataclass(frozen=True, slots=True)
class Fatigue:
    """Approval fatigue over the last ``days`` days: are people rubber-stamping (a rate near
    1), slow (a long median), or letting requests expire? Busiest first."""

    days: int
    since: float
    workflows: list[FatigueRow]
    tools: list[FatigueRow]

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API."""
        return {
            "days": self.days,
            "since": self.since,
            "workflows": [asdict(r) for r in self.workflows],
            "tools": [asdict(r) for r in self.tools],
        }


_STATUSES = ("pending", "approved", "denied", "expired")


class _Tally:
    def __init__(self) -> None:
        self.counts = {"approved": 0, "denied": 0, "expired": 0, "pending": 0}
        self.requests = 0
        self.durations: list[float] = []

    def add(self, status: str, duration: float | None) -> None:
        self.requests += 1
        self.counts[status] = self.counts.get(status, 0) + 1
        if status in ("approved", "denied") and duration is not None:
            self.durations.append(max(duration, 0.0))

    def row(self, name: str) -> FatigueRow:
        approved, denied = self.counts["approved"], self.counts["denied"]
        decided = approved + denied
        return FatigueRow(
            name=name,
            requests=self.requests,
            approved=approved,
            denied=denied,
            expired=self.counts["expired"],
            pending=self.counts["pending"],
            approval_rate=approved / decided if decided else None,
            median_decide_s=statistics.median(self.durations) if self.durations else None,
        )


def _rows(tallies: dict[str, _Tally]) -> list[FatigueRow]:
    rows = [t.row(name) for name, t in tallies.items()]
    return sorted(rows, key=lambda r: (-r.requests, r.name))


def fatigue(
    console: Console,
    days: int,
    *,
    now: float | None = None,
    version: tuple[Any, ...] | None = None,
) -> Fatigue:
    """The requests made in the last ``days`` days, per workflow and per tool.

    One read of the window's rows (four narrow columns; every status named so the range on
    ``requested_at`` probes the ``(status, requested_at)`` index: the window is read, not
    the table), tallied here: the median needs every decided duration, which SQLite cannot
    compute in SQL. Requests past their expiry are marked expired first, as the inbox does
    (unless ``version`` is given: the caller did). Without ``now``, the tallies are kept
    under the approvals' version (at most `_KEPT_S` seconds: the window ends that much
    earlier at worst).

    Raises:
        ConsoleError: 400 for ``days`` outside 1..365.
    """
    if not 1 <= days <= 365:
        raise ConsoleError(400, f"days must be between 1 and 365, not {days}")
    version = version or approvals_version(console)
    if now is not None:
        return _fatigue(console.store(), days, now)
    return kept(
        console.store(),
        ("fatigue", days, *version),
        _KEPT_S,
        lambda: _fatigue(console.store(), days, time.time()),
    )


def _fatigue(store: Store, days: int, now: float) -> Fatigue:
    since = now - days * 86400.0
    query = select(
        approvals.c.workflow,
        approvals.c.tool,
        approvals.c.status,
        (approvals.c.decided_at - approvals.c.requested_at).label("took"),
    ).where(
        approvals.c.status.in_(_STATUSES),
        approvals.c.requested_at >= since,
        approvals.c.requested_at <= now,
    )
    per_workflow: dict[str, _Tally] = {}
    per_tool: dict[str, _Tally] = {}
    with store.engine.connect() as conn:
        for workflow, tool, status, took in conn.execute(query):
            per_workflow.setdefault(workflow, _Tally()).add(status, took)
            per_tool.setdefault(tool, _Tally()).add(status, took)
    return Fatigue(days, since, _rows(per_workflow), _rows(per_tool))
