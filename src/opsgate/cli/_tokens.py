"""`opsgate tokens create|list|revoke`: who may use the web console, and as what role.
Creating and revoking are audit events (actor, name, role; never the token)."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.cli._common import cli_errors, console
from opsgate.cli._safe import cell, shown
from opsgate.server import Role, create_token, list_tokens, revoke_token
from opsgate.store import NoDatabaseError, open_store

tokens_app = typer.Typer(
    help="Console access tokens (viewer, approver, admin).", no_args_is_help=True
)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
]


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _when(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


@tokens_app.command("create")
@cli_errors
def create(
    name: Annotated[str, typer.Option(help="Who the token acts as (recorded as the actor).")],
    role: Annotated[str, typer.Option(help="viewer, approver or admin.")] = "viewer",
    db: DbOption = None,
) -> None:
    """Create a token and print it, once: only its SHA-256 is stored."""
    parsed = Role.parse(role)
    store = open_store(db)
    try:
        recorder = AuditRecorder(AuditLog(store, Signer.from_file()))
        try:
            token, info = create_token(
                store, name=name, role=parsed, created_by=_operator(), recorder=recorder
            )
        finally:
            recorder.close()
    finally:
        store.close()
    console.print(f"token {shown(info.token_id)} for {shown(info.name)} ({info.role.label}):")
    console.print(token, markup=False, highlight=False)
    console.print("it is shown only now: keep it in a secret store")


@tokens_app.command("list")
@cli_errors
def list_(
    db: DbOption = None,
    all_: Annotated[bool, typer.Option("--all", help="Revoked tokens too.")] = False,
) -> None:
    """Tokens (never the tokens themselves): id, name, role, when and by whom."""
    try:
        store = open_store(db, migrate=False)
    except NoDatabaseError as exc:
        console.print(shown(exc), soft_wrap=True)
        return
    try:
        tokens = list_tokens(store, include_revoked=all_)
    finally:
        store.close()
    table = Table(title="console tokens", title_justify="left")
    for column in ("id", "name", "role", "created (UTC)", "by", "revoked (UTC)"):
        table.add_column(column, overflow="fold")
    for t in tokens:
        table.add_row(
            cell(t.token_id),
            cell(t.name),
            t.role.label,
            _when(t.created_at),
            cell(t.created_by),
            _when(t.revoked_at),
        )
    console.print(table)
    if not tokens:
        console.print("no tokens")


@tokens_app.command("revoke")
@cli_errors
def revoke(
    which: Annotated[str, typer.Argument(help="The token's id or name.")],
    db: DbOption = None,
) -> None:
    """Revoke a token: it and its browser sessions stop working at once."""
    store = open_store(db, migrate=False)
    try:
        recorder = AuditRecorder(AuditLog(store, Signer.from_file()))
        try:
            info = revoke_token(store, which, revoked_by=_operator(), recorder=recorder)
        finally:
            recorder.close()
    finally:
        store.close()
    console.print(f"revoked token {shown(info.token_id)} of {shown(info.name)}")
