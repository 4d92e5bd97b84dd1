"""Which recorded runs a replay or a report reads: the ``runs`` table, by start time."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from opsgate.evals import parse_since
from opsgate.store import Store, runs

__all__ = ["RecordedRun", "recorded_runs", "since_time"]


@dataclass(frozen=True, slots=True)
class RecordedRun:
    """A run of the window, as the ``runs`` table lists it."""

    run_id: str
    workflow: str
    agent_id: str
    started_at: float


def since_time(since: float | str) -> float:
    """A unix time from ``7d``/``24h``/``30m``/an ISO date, or a unix time as given.

    Raises:
        SuiteError: a malformed or future ``since`` (one line, naming it).
    """
    return parse_since(since) if isinstance(since, str) else float(since)


def recorded_runs(
    store: Store, *, since: float, workflow: str | None, include_eval: bool
) -> list[RecordedRun]:
    """The runs that started at or after ``since``, oldest first (a replay walks history
    in the order it happened); production runs only unless ``include_eval``."""
    conditions = [runs.c.started_at >= since]
    if workflow is not None:
        conditions.append(runs.c.workflow == workflow)
    if not include_eval:
        conditions.append(runs.c.purpose == "production")
    query = (
        select(runs.c.run_id, runs.c.workflow, runs.c.agent_id, runs.c.started_at)
        .where(*conditions)
        .order_by(runs.c.started_at, runs.c.run_id)
    )
    with store.engine.connect() as conn:
        return [
            RecordedRun(str(r.run_id), str(r.workflow), str(r.agent_id), float(r.started_at))
            for r in conn.execute(query)
        ]
