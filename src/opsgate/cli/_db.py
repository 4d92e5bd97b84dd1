"""`opsgate db upgrade|current`: the database's schema (the Alembic migrations in
`opsgate/store/migrations/`)."""

from __future__ import annotations

from typing import Annotated

import typer

from opsgate.cli._common import cli_errors, console
from opsgate.cli._safe import shown
from opsgate.store import NoDatabaseError, schema_state, upgrade_store

db_app = typer.Typer(help="The database: create, upgrade, show its schema.", no_args_is_help=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
]


@db_app.command("upgrade")
@cli_errors
def upgrade(db: DbOption = None) -> None:
    """Create the database if there is none, and upgrade its schema to this opsgate's.

    The default SQLite file (in $OPSGATE_HOME, or .opsgate/) is also created and upgraded
    by the first command that writes; a database elsewhere, or on PostgreSQL, can be upgraded
    here first (as its owner, so that the `opsgate_writer` role is made too). A SQLite file
    in a folder that does not exist is refused (exit 2). Exit 0 once it is at the head.
    """
    before, state = upgrade_store(db)
    where = shown(state.url)
    if before is None:
        console.print(f"created `{where}` at schema {shown(state.head)}", soft_wrap=True)
    elif before == state.head:
        console.print(
            f"`{where}` is already at schema {shown(state.head)} (the newest)", soft_wrap=True
        )
    else:
        console.print(
            f"upgraded `{where}` from schema {shown(before)} to {shown(state.head)}",
            soft_wrap=True,
        )


@db_app.command("current")
@cli_errors
def current(db: DbOption = None) -> None:
    """Print the database's schema revision (and whether it is this opsgate's newest).

    Changes nothing and creates nothing: with no database yet it says so (exit 0).
    """
    try:
        state = schema_state(db)
    except NoDatabaseError as exc:
        console.print(shown(exc), soft_wrap=True)
        return
    where = shown(state.url)
    revision = shown(state.current or "none")
    if state.current == state.head:
        console.print(f"{revision} (head) in `{where}`", soft_wrap=True)
    elif not state.known:
        console.print(
            f"{revision} in `{where}`: newer than this opsgate (which knows up to "
            f"{shown(state.head)}); upgrade opsgate",
            soft_wrap=True,
        )
    else:
        console.print(
            f"{revision} in `{where}`: older than this opsgate's {shown(state.head)}; run "
            f"`opsgate db upgrade{' --db ' + where if db else ''}`",
            soft_wrap=True,
        )
