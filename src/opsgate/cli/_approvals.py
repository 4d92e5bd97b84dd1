"""`opsgate approvals list|approve|deny`: the durable approval queue from a terminal."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.table import Table

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.cli._common import cli_errors, console
from opsgate.cli._safe import cell, shown
from opsgate.gateway import DurableApprovalQueue
from opsgate.store import NoDatabaseError, open_store

approvals_app = typer.Typer(help="The durable approval queue.", no_args_is_help=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
]
AsOption = Annotated[str, typer.Option("--as", help="Your identity (required): who decides.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why; kept in the audit trail.")]


@approvals_app.command("list")
@cli_errors
def list_(
    db: DbOption = None,
    all_: Annotated[bool, typer.Option("--all", help="Decided and expired ones too.")] = False,
) -> None:
    """Requests waiting for a person (oldest first); exit 0 when there are none."""
    try:
        store = open_store(db, migrate=False)
    except NoDatabaseError as exc:  # no database: no request, and none is made
        console.print(shown(exc), soft_wrap=True)
        return
    try:
        records = DurableApprovalQueue(store).list(None if all_ else "pending")
    finally:
        store.close()
    table = Table(title="approval requests", title_justify="left")
    for column in ("request", "age", "status", "workflow", "invoker", "tool", "arguments", "why"):
        # fold, not "…": a long value (an address padded to push its domain out of view)
        # is shown whole to the person who approves it
        table.add_column(column, overflow="fold")
    now = time.time()
    for r in records:
        # every cell comes from the store (the agent, a ticket, a model): text, never markup
        table.add_row(
            cell(r.request_id[:12]),
            f"{now - r.requested_at:.0f}s",
            cell(r.status),
            cell(r.workflow),
            cell(r.invoker),
            cell(r.tool),
            cell(json.dumps(r.args, sort_keys=True)),
            cell(r.decision.get("message", "")),
        )
    console.print(table)
    if not records:
        console.print("no requests" if all_ else "no pending requests")


def _decide(request_id: str, approved: bool, who: str, reason: str, db: str | None) -> None:
    store = open_store(db, migrate=False)
    recorder = AuditRecorder(AuditLog(store, Signer.from_file()))
    try:
        record = DurableApprovalQueue(store, recorder=recorder).decide(
            request_id, approved=approved, approver=who, reason=reason
        )
    finally:
        recorder.close()
        store.close()
    console.print(
        f"{shown(record.status)} `{shown(record.tool)}` of run {shown(record.run_id[:12])} "
        f"(request {shown(record.request_id[:12])}) as {shown(record.approver)}; audited"
    )


@approvals_app.command("approve")
@cli_errors
def approve(
    request_id: Annotated[str, typer.Argument(help="The request id (or a unique prefix).")],
    who: AsOption,
    reason: ReasonOption = "",
    db: DbOption = None,
) -> None:
    """Approve a pending request; the run resumes and the call runs exactly once."""
    _decide(request_id, True, who, reason, db)


@approvals_app.command("deny")
@cli_errors
def deny(
    request_id: Annotated[str, typer.Argument(help="The request id (or a unique prefix).")],
    who: AsOption,
    reason: ReasonOption = "",
    db: DbOption = None,
) -> None:
    """Deny a pending request; the call never runs."""
    _decide(request_id, False, who, reason, db)
