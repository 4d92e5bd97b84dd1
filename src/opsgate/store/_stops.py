"""Stop requests: a person asks for a live run to stop; the gateway honours it.

The request is a row (`run_stops`); the process running the run learns of it by polling
(`opsgate.gateway.StoreStopSource`), so the console needs no channel into that process
and a stop survives a restart of either side.
"""

from __future__ import annotations

import time
from typing import Literal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from opsgate.store._schema import run_stops, runs
from opsgate.store._store import Store

__all__ = ["StopStatus", "request_stop"]

#: What came of a request: ``requested``; ``already_requested`` (one is pending, or was
#: honoured); ``not_running`` (the run has ended: nothing to stop); ``unknown_run``.
StopStatus = Literal["requested", "already_requested", "not_running", "unknown_run"]

_LIVE = ("running", "awaiting_approval")


def request_stop(store: Store, run_id: str, *, actor: str, reason: str = "") -> StopStatus:
    """Ask for run ``run_id`` to stop before its next call, as ``actor``.

    Raises:
        ValueError: no actor (a stop always names who asked).
    """
    if not actor or not actor.strip():
        raise ValueError("a stop request names who asked for it")
    # A read then a write: on SQLite the transaction takes the write lock up front (BEGIN
    # IMMEDIATE waits out the busy timeout), else a commit by another connection between the
    # read and the write fails it at once with "database is locked".
    with (
        store.engine.connect().execution_options(sqlite_immediate=True) as conn,
        conn.begin(),
    ):
        status = conn.execute(select(runs.c.status).where(runs.c.run_id == run_id)).scalar()
        if status is None:
            return "unknown_run"
        if status not in _LIVE:
            return "not_running"
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        added = conn.execute(
            insert(run_stops)
            .values(
                run_id=run_id, actor=actor.strip()[:256], reason=reason, requested_at=time.time()
            )
            .on_conflict_do_nothing(index_elements=[run_stops.c.run_id])
            .returning(run_stops.c.run_id)
        ).first()
    return "requested" if added else "already_requested"
