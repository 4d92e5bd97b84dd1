"""The runs list: filters, keyset pagination, read from the ``runs`` table (and, for "had
a denial", the audit trail's decision events).

Every page is one indexed range read, newest first, whatever the table's size: the
cursor is a row-value bound on ``(started_at, run_id)`` (migration 0014 indexes it after
``purpose`` and after ``status``), and "had a denial" is checked run by run as the page
fills (``EXISTS`` over the run's own events), never over the whole trail.

`opsgate.store` owns the table but exports no query over it; this is the console's own,
like `opsgate runs list`'s, over the exported tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, cast, func, select, tuple_

from opsgate.errors import OpsgateError
from opsgate.evals import parse_since
from opsgate.server._console import ConsoleError
from opsgate.store import Store, audit_events, runs

__all__ = ["RunFilters", "RunPage", "find_run", "list_runs", "parse_cursor"]

LIVE = ("running", "awaiting_approval")


@dataclass(frozen=True, slots=True)
class RunFilters:
    """What the runs list is narrowed to (every field optional)."""

    workflow: str | None = None
    status: str | None = None
    invoker: str | None = None
    agent: str | None = None
    policy_version: str | None = None
    since: str | None = None
    until: str | None = None
    denied: bool = False
    escalated: bool = False
    waiting: bool = False
    include_eval: bool = False

    def query(self) -> dict[str, str]:
        """The filters as query parameters (for the next page's link)."""
        out: dict[str, str] = {}
        for name in ("workflow", "status", "invoker", "agent", "policy_version", "since", "until"):
            value = getattr(self, name)
            if value:
                out[name] = value
        for name in ("denied", "escalated", "waiting", "include_eval"):
            if getattr(self, name):
                out[name] = "1"
        return out


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs, newest first, and the cursor of the next (None: last page)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None


def parse_cursor(
    text: str, *, option: str = "before", shape: str = "started_at:run_id"
) -> tuple[float, str]:
    """``TIME:ID`` (what the previous page gave: ``shape``) → its parts.

    Raises:
        ConsoleError: 400 for anything else (naming ``option``).
    """
    at, sep, run_id = text.partition(":")
    try:
        value = float(at)
    except ValueError:
        value = float("nan")
    if not sep or not run_id or value != value or len(run_id) > 64:
        raise ConsoleError(
            400,
            f"`{option}` takes the cursor the previous page gave (`{shape}`), not `{text}`",
        )
    return value, run_id


def _moment(text: str, name: str) -> float:
    """``7d``, ``12h``, ``30m`` (that long ago) or an ISO date/time, as a Unix time."""
    try:
        return parse_since(text)
    except OpsgateError as exc:
        raise ConsoleError(400, str(exc).replace("--since", f"`{name}`")) from None


def _body_text(dialect: str) -> Any:
    """An event's canonical body as text, in SQL (for a LIKE over it)."""
    if dialect == "postgresql":
        return func.convert_from(audit_events.c.body, "UTF8")
    return cast(audit_events.c.body, Text)


def list_runs(
    store: Store, filters: RunFilters, *, before: str | None = None, limit: int = 50
) -> RunPage:
    """A page of runs matching ``filters``, newest first.

    Raises:
        ConsoleError: 400 for a malformed ``since`` or ``before``.
    """
    conditions: list[Any] = []
    if filters.since:
        conditions.append(runs.c.started_at >= _moment(filters.since, "since"))
    if filters.until:
        conditions.append(runs.c.started_at < _moment(filters.until, "until"))
    for column, value in (
        (runs.c.workflow, filters.workflow),
        (runs.c.status, filters.status),
        (runs.c.invoker, filters.invoker),
        (runs.c.agent_id, filters.agent),
        (runs.c.policy_version, filters.policy_version),
    ):
        if value:
            conditions.append(column == value)
    if filters.escalated:
        conditions.append(runs.c.status == "escalated")
    if filters.waiting:
        conditions.append(runs.c.status == "awaiting_approval")
    if filters.denied:
        # canonical bodies: sorted keys, no spaces; a quote inside a value is escaped, so
        # only a decision's own `effect` field can match
        # run by run as the page fills; OFFSET 0 keeps PostgreSQL from turning it into a
        # join that reads every decision of the trail first
        conditions.append(
            select(audit_events.c.seq)
            .where(
                audit_events.c.run_id == runs.c.run_id,
                audit_events.c.type == "decision",
                _body_text(store.dialect).like('%"effect":"deny"%'),
            )
            .offset(0)
            .exists()
        )
    if not filters.include_eval:
        conditions.append(runs.c.purpose == "production")
    if before is not None:
        at, run_id = parse_cursor(before)
        conditions.append(tuple_(runs.c.started_at, runs.c.run_id) < tuple_(at, run_id))
    stmt = (
        select(runs)
        .where(*conditions)
        .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
        .limit(limit + 1)
    )
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = f"{rows[-1]['started_at']!r}:{rows[-1]['run_id']}" if more and rows else None
    return RunPage(rows, cursor)


def find_run(store: Store, run_id: str) -> dict[str, Any]:
    """The ``runs`` row of ``run_id``.

    Raises:
        ConsoleError: 404 when there is none.
    """
    if len(run_id) > 64:
        raise ConsoleError(404, "no such run")
    with store.engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
    if row is None:
        raise ConsoleError(404, f"no run `{run_id}`")
    return dict(row._mapping)
