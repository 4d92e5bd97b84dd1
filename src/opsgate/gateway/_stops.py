"""Stopping a live run from outside: a person asks (`opsgate.store.request_stop`, the
console's stop button), the gateway running the run honours it before the run's next call
or model turn: the run ends ``escalated`` with reason ``interrupted``, the actor recorded,
its partial progress kept.

`StoreStopSource` learns of requests by polling the store on a thread of its own, so the
check on a call's path is a dictionary look-up, and a request reaches any process that runs
the run without a channel into it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sqlalchemy import select, update

from opsgate.gateway._polling import Poller
from opsgate.store import Store, run_stops

__all__ = ["StopRequest", "StopSource", "StoreStopSource"]

_log = logging.getLogger("opsgate.gateway")


@dataclass(frozen=True, slots=True)
class StopRequest:
    """Someone asked for a run to stop."""

    run_id: str
    actor: str
    reason: str = ""
    requested_at: float = 0.0


@runtime_checkable
class StopSource(Protocol):
    """Where a gateway learns that a run must stop."""

    def requested(self, run_id: str) -> StopRequest | None:
        """The pending request to stop ``run_id``, if any (called on every call: cheap)."""
        ...

    def honoured(self, run_id: str) -> None:
        """The run was stopped: the request is settled."""
        ...


class StoreStopSource:
    """Stop requests from the store's ``run_stops`` table, polled every ``poll_s`` seconds.

    A store that cannot be read is logged and counted (``errors``) and the last known
    requests stay in force: the runs go on rather than all stopping on a database hiccup.
    """

    def __init__(self, store: Store, *, poll_s: float = 0.5) -> None:
        self._engine = store.engine
        self._open: dict[str, StopRequest] = {}
        self._write_errors = 0
        self._poller = Poller(self._read, poll_s=poll_s, name="opsgate-stops")

    @property
    def errors(self) -> int:
        """Failed reads and writes of the store."""
        return self._poller.errors + self._write_errors

    def requested(self, run_id: str) -> StopRequest | None:
        """The pending request for ``run_id`` as of the last poll."""
        return self._open.get(run_id)

    def honoured(self, run_id: str) -> None:
        """Mark the request honoured (a failure is logged: the run has ended anyway)."""
        self._open.pop(run_id, None)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    update(run_stops)
                    .where(run_stops.c.run_id == run_id)
                    .values(honoured_at=time.time())
                )
        except Exception as exc:
            self._write_errors += 1
            _log.warning("could not mark the stop of run %s honoured: %s", run_id, exc)

    def refresh(self) -> None:
        """Read the pending requests now."""
        self._poller.refresh()

    def _read(self) -> None:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    run_stops.c.run_id,
                    run_stops.c.actor,
                    run_stops.c.reason,
                    run_stops.c.requested_at,
                ).where(run_stops.c.honoured_at.is_(None))
            ).all()
        self._open = {r[0]: StopRequest(r[0], r[1], r[2] or "", float(r[3])) for r in rows}

    def close(self) -> None:
        """Stop polling."""
        self._poller.close()
