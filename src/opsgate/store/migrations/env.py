"""Alembic environment: opsgate runs migrations programmatically on an open connection."""

from __future__ import annotations

from alembic import context

from opsgate.store._schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through opsgate.store
    raise RuntimeError("run opsgate's migrations through opsgate.store.open_store()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
