"""`opsgate runs list`: what ran, from the ``runs`` table, newest first, without a UI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import and_, or_, select

from opsgate.cli._common import cli_errors, console
from opsgate.cli._safe import cell, shown
from opsgate.errors import ConfigError
from opsgate.evals import parse_since
from opsgate.store import NoDatabaseError, open_store, request_stop, runs

runs_app = typer.Typer(help="What ran: the runs the gateway recorded.", no_args_is_help=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
]

_COLUMNS = (
    "run",
    "started (UTC)",
    "workflow",
    "invoker",
    "agent",
    "policy",
    "status",
    "tools",
    "cost",
    "elapsed",
    "reason",
)


def _cursor(text: str) -> tuple[float, str | None]:
    """``--before``: ``STARTED_AT`` or ``STARTED_AT:RUN_ID`` (what the previous page printed)."""
    at, _, run_id = text.partition(":")
    try:
        value = float(at)
    except ValueError:
        raise ConfigError(
            f"--before takes the value the previous page printed (a start time, "
            f"optionally `:run id`), not `{text}`"
        ) from None
    return value, (run_id or None)


def _when(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


@runs_app.command("list")
@cli_errors
def list_(
    db: DbOption = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only this status (completed, escalated, failed, ...).")
    ] = None,
    invoker: Annotated[str | None, typer.Option(help="Only runs invoked by this identity.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent id.")] = None,
    policy_version: Annotated[
        str | None, typer.Option("--policy-version", help="Only this policy version.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Started within: 7d, 12h, 30m or an ISO date/time.")
    ] = None,
    escalated: Annotated[
        bool, typer.Option("--escalated", help="Only escalated runs (status escalated).")
    ] = False,
    include_eval: Annotated[
        bool,
        typer.Option("--include-eval", help="List agent-eval trials too (left out by default)."),
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per page.")] = 50,
    before: Annotated[
        str | None,
        typer.Option(help="The next page: the value the previous page printed."),
    ] = None,
) -> None:
    """Runs, newest first, filtered; prints the `--before` value for the next page."""
    conditions: list[Any] = []
    if since is not None:
        conditions.append(runs.c.started_at >= parse_since(since))
    if before is not None:
        at, run_id = _cursor(before)
        if run_id is None:
            conditions.append(runs.c.started_at < at)
        else:  # keyset on (started_at, run_id): runs that started at the same time are kept
            conditions.append(
                or_(
                    runs.c.started_at < at,
                    and_(runs.c.started_at == at, runs.c.run_id < run_id),
                )
            )
    for column, value in (
        (runs.c.workflow, workflow),
        (runs.c.status, status),
        (runs.c.invoker, invoker),
        (runs.c.agent_id, agent),
        (runs.c.policy_version, policy_version),
    ):
        if value is not None:
            conditions.append(column == value)
    if escalated:
        conditions.append(runs.c.status == "escalated")
    filtered = bool(conditions)
    if not include_eval:
        conditions.append(runs.c.purpose == "production")
    stmt = (
        select(runs)
        .where(*conditions)
        .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
        .limit(limit + 1)
    )
    try:
        store = open_store(db, migrate=False, create=False)
    except NoDatabaseError as exc:  # no database: no run, and none is made
        console.print(shown(exc), soft_wrap=True)
        return
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(stmt).all()
    finally:
        store.close()
    more = len(rows) > limit
    rows = rows[:limit]
    table = Table(title="runs", title_justify="left")
    for heading in _COLUMNS:
        table.add_column(heading, overflow="fold")
    for row in rows:
        r = row._mapping
        # every cell comes from the store (an invoker, a reason, a workflow): text, never markup
        table.add_row(
            cell(str(r["run_id"])[:12]),
            _when(r["started_at"]),
            cell(r["workflow"]),
            cell(r["invoker"]),
            cell(r["agent_id"]),
            cell(r["policy_version"]),
            cell(r["status"] + (" (eval)" if r["purpose"] == "eval" else "")),
            cell(r["tool_calls"]),
            f"${float(r['cost_usd'] or 0.0):.4f}",
            "" if r["elapsed_s"] is None else f"{float(r['elapsed_s']):.1f}s",
            cell(r["reason"] or "", limit=120),
        )
    if not rows:
        console.print(
            "no runs match"
            if filtered
            else "no production runs recorded yet (--include-eval lists agent-eval trials)"
            if not include_eval
            else "no runs recorded yet"
        )
        return
    console.print(table)
    if more:
        last = rows[-1]._mapping
        cursor = f"{float(last['started_at'])!r}:{last['run_id']}"
        console.print(f"more: --before {shown(cursor)}", soft_wrap=True)


_STOPPED = {
    "requested": "stop requested: run {run} ends before its next call (interrupted)",
    "already_requested": "a stop of run {run} was already requested",
    "not_running": "run {run} has ended: nothing to stop",
    "unknown_run": "no run {run} in this database",
}


@runs_app.command("stop")
@cli_errors
def stop(
    run_id: Annotated[str, typer.Argument(help="The run to stop.")],
    who: Annotated[str, typer.Option("--as", help="Your identity (required): who stops it.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the audit trail.")] = "",
    db: DbOption = None,
) -> None:
    """Stop a live run: the gateway running it ends it before its next call or model turn
    (escalated, reason `interrupted`, you recorded, its progress kept). Exit 1 when there is
    nothing to stop."""
    store = open_store(db, migrate=False, create=False)
    try:
        outcome = request_stop(store, run_id, actor=who, reason=reason)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        store.close()
    console.print(shown(_STOPPED[outcome].format(run=run_id)), soft_wrap=True)
    if outcome in ("not_running", "unknown_run"):
        raise typer.Exit(1)
