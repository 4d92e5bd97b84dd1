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

The reservation is atomic and visible to every process at once, but it does not wait for a
durable commit of its own (SQLite: ``synchronous=NORMAL`` for its transaction, in WAL mode;
PostgreSQL: ``synchronous_commit`` off for it): both logs are sequential, so the call's
next durable commit in the same database, the write-ahead audit commit of its decision that
the gateway waits for before any tool runs, makes the reservation durable too. A crash of
the machine before that commit loses the reservation and the decision together (the call
never ran); a crash of the process loses nothing. One fsync per call, not two.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import Connection, and_, bindparam, func, insert, select, text, update

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
        if self._engine.dialect.name == "sqlite":
            return self._reserve_sqlite(uses, now)
        with self._engine.connect() as conn, conn.begin():
            conn.execute(text("SET LOCAL synchronous_commit TO OFF"))  # this transaction only
            for key in sorted({(u.quota.key, u.subject) for u in uses}):  # no deadlock
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id(key)})
            for use in uses:
                used = _used(conn, use, now)
                if used + use.amount > use.quota.max:
                    conn.rollback()
                    return QuotaRefusal(use, used)
            conn.execute(insert(quota_uses), [_row(u, now) for u in uses])
        return None

    def _reserve_sqlite(self, uses: Sequence[QuotaUse], now: float) -> QuotaRefusal | None:
        """The reservation on SQLite, through the driver (it runs on every call: SQLAlchemy's
        statement handling was half its cost): ``BEGIN IMMEDIATE`` (one writer at a time),
        committed with ``synchronous=NORMAL``, the connection given back at ``FULL``."""
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")  # outside a transaction: autocommit
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    for use in uses:
                        since = now - use.quota.window_s
                        tally = (use.quota.key[:256], use.subject[:256], since)
                        used = float(cursor.execute(_SQLITE_USED, tally).fetchone()[0] or 0.0)
                        if used + use.amount > use.quota.max:
                            cursor.execute("ROLLBACK")
                            return QuotaRefusal(use, used)
                    cursor.executemany(
                        _SQLITE_INSERT,
                        [tuple(_row(u, now)[c] for c in _SQLITE_COLUMNS) for u in uses],
                    )
                    cursor.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):  # none open: nothing to roll back
                        cursor.execute("ROLLBACK")
                    raise
            finally:
                try:
                    cursor.execute("PRAGMA synchronous=FULL")
                    cursor.close()
                except BaseException:
                    raw.invalidate()  # never pool a connection whose commits skip the fsync
                    raise
        finally:
            raw.close()
        return None

    def release(self, run_id: str, call_id: str) -> None:
        """See `QuotaLedger.release` (durable at once: a share given back is rare, and its
        call will not run, so no later commit of the call would carry it)."""
        with self._engine.begin() as conn:
            conn.execute(
                update(quota_uses)
                .where(quota_uses.c.run_id == run_id, quota_uses.c.call_id == call_id)
                .values(released=True)
            )


def _row(use: QuotaUse, now: float) -> dict[str, Any]:
    """The ``quota_uses`` row of a reservation."""
    return {
        "quota_key": use.quota.key[:256],
        "subject": use.subject[:256],
        "amount": use.amount,
        "at": now,
        "run_id": use.run_id,
        "call_id": use.call_id,
        "released": False,
    }


_SQLITE_COLUMNS = ("quota_key", "subject", "amount", "at", "run_id", "call_id", "released")
_SQLITE_INSERT = (
    f"INSERT INTO quota_uses ({', '.join(_SQLITE_COLUMNS)}) VALUES ({', '.join('?' * 7)})"
)
_SQLITE_USED = (
    "SELECT coalesce(sum(amount), 0.0) FROM quota_uses "
    "WHERE quota_key = ? AND subject = ? AND at > ? AND released = 0"
)


#: What a quota and subject have in use since a time (built once: it runs on every call).
_USED = select(func.coalesce(func.sum(quota_uses.c.amount), 0.0)).where(
    and_(
        quota_uses.c.quota_key == bindparam("key"),
        quota_uses.c.subject == bindparam("subject"),
        quota_uses.c.at > bindparam("since"),
        quota_uses.c.released.is_(False),
    )
)


def _used(conn: Connection, use: QuotaUse, now: float) -> float:
    values = {
        "key": use.quota.key[:256],
        "subject": use.subject[:256],
        "since": now - use.quota.window_s,
    }
    return float(conn.execute(_USED, values).scalar() or 0.0)


def _lock_id(key: tuple[str, str]) -> int:
    """A signed 64-bit advisory lock id for a quota and subject."""
    digest = hashlib.sha256("\0".join(key).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
