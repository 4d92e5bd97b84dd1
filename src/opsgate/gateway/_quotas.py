"""Quotas across runs: what a workflow, an invoker or an agent may do per window.

A call that the policy allows reserves its share of each quota it counts against, all or
none, before it runs (or waits for a person): calls in flight count, so concurrent runs
(threads, processes, machines sharing a database) cannot overshoot together. A call that
then never runs (a person denied it, the approval expired) gives its share back; one that
ran, or failed while running, keeps it (its effect may have happened).

`StoreQuotaLedger` keeps the reservations in the store, one transaction per call, made
exclusive per quota: ``BEGIN IMMEDIATE`` on SQLite (one writer at a time), a transaction
advisory lock per quota and subject on PostgreSQL. `InMemoryQuotaLedger` is the same within
one process (tests, a single worker).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sqlalchemy import Connection, and_, func, insert, select, text, update

from opsgate.policy import Quota
from opsgate.store import Store, quota_uses

__all__ = ["InMemoryQuotaLedger", "QuotaLedger", "QuotaRefusal", "QuotaUse", "StoreQuotaLedger"]


@dataclass(frozen=True, slots=True)
class QuotaUse:
    """One call's share of one quota.

    Attributes:
        quota: The quota.
        subject: Whose tally (the workflow, the invoker or the agent).
        amount: What the call adds (1, or its argument's value).
        run_id: The run.
        call_id: The call.
    """

    quota: Quota
    subject: str
    amount: float
    run_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class QuotaRefusal:
    """The quota a call would take past its limit, and by how much."""

    use: QuotaUse
    used: float


@runtime_checkable
class QuotaLedger(Protocol):
    """Keeps quota reservations across runs."""

    def reserve(self, uses: Sequence[QuotaUse]) -> QuotaRefusal | None:
        """Reserve every use, or none: None when reserved, else the first quota that the
        call would take past its limit."""
        ...

    def release(self, run_id: str, call_id: str) -> None:
        """Give back what the call reserved (it never ran)."""
        ...


class InMemoryQuotaLedger:
    """Reservations in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._uses: list[tuple[QuotaUse, float]] = []

    def reserve(self, uses: Sequence[QuotaUse]) -> QuotaRefusal | None:
        """See `QuotaLedger.reserve`."""
        now = self._clock()
        with self._lock:
            for use in uses:
                used = sum(
                    u.amount
                    for u, at in self._uses
                    if u.quota.key == use.quota.key
                    and u.subject == use.subject
                    and at > now - use.quota.window_s
                )
                if used + use.amount > use.quota.max:
                    return QuotaRefusal(use, used)
            self._uses.extend((use, now) for use in uses)
        return None

    def release(self, run_id: str, call_id: str) -> None:
        """See `QuotaLedger.release`."""
        with self._lock:
            self._uses = [
                (u, at) for u, at in self._uses if (u.run_id, u.call_id) != (run_id, call_id)
            ]


class StoreQuotaLedger:
    """Reservations in the store's ``quota_uses`` table, shared by every process."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._engine = store.engine
        self._clock = clock

    def reserve(self, uses: Sequence[QuotaUse]) -> QuotaRefusal | None:
        """See `QuotaLedger.reserve` (one transaction, exclusive per quota and subject)."""
        now = self._clock()
        conn_options = {"sqlite_immediate": True}
        with self._engine.connect().execution_options(**conn_options) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                for key in sorted({(u.quota.key, u.subject) for u in uses}):  # no deadlock
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id(key)})
            for use in uses:
                used = _used(conn, use, now)
                if used + use.amount > use.quota.max:
                    conn.rollback()
                    return QuotaRefusal(use, used)
            conn.execute(
                insert(quota_uses),
                [
                    {
                        "quota_key": u.quota.key[:256],
                        "subject": u.subject[:256],
                        "amount": u.amount,
                        "at": now,
                        "run_id": u.run_id,
                        "call_id": u.call_id,
                        "released": False,
                    }
                    for u in uses
                ],
            )
        return None

    def release(self, run_id: str, call_id: str) -> None:
        """See `QuotaLedger.release`."""
        with self._engine.begin() as conn:
            conn.execute(
                update(quota_uses)
                .where(quota_uses.c.run_id == run_id, quota_uses.c.call_id == call_id)
                .values(released=True)
            )


def _used(conn: Connection, use: QuotaUse, now: float) -> float:
    row = conn.execute(
        select(func.coalesce(func.sum(quota_uses.c.amount), 0.0)).where(
            and_(
                quota_uses.c.quota_key == use.quota.key[:256],
                quota_uses.c.subject == use.subject[:256],
                quota_uses.c.at > now - use.quota.window_s,
                quota_uses.c.released.is_(False),
            )
        )
    ).scalar()
    return float(row or 0.0)


def _lock_id(key: tuple[str, str]) -> int:
    """A signed 64-bit advisory lock id for a quota and subject."""
    digest = hashlib.sha256("\0".join(key).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
