"""Initial schema: meta, runs, the append-only audit trail and its checkpoints.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE_GUARDS = """
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END;
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END;
"""

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION opsgate_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
"""

_PG_GUARDS = """
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
  FOR EACH ROW EXECUTE FUNCTION opsgate_append_only();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
  FOR EACH STATEMENT EXECUTE FUNCTION opsgate_append_only();
"""

# A role for gateway workers: it may read and append the audit trail, never change it.
_PG_WRITER_ROLE = """
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'opsgate_writer')
     AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user
                 AND (rolsuper OR rolcreaterole)) THEN
    CREATE ROLE opsgate_writer NOLOGIN;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'opsgate_writer') THEN
    GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO opsgate_writer;
    GRANT SELECT, INSERT, UPDATE ON runs, opsgate_meta TO opsgate_writer;
  END IF;
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "opsgate_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("workflow", sa.String(128), nullable=False),
        sa.Column("invoker", sa.String(256), nullable=False),
        sa.Column("agent_id", sa.String(256), nullable=False),
        sa.Column("policy_version", sa.String(128), nullable=False),
        sa.Column("model_route", sa.Text),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("tool_calls", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("elapsed_s", sa.Float),
    )
    op.create_index("ix_runs_workflow_started", "runs", ["workflow", "started_at"])
    op.create_table(
        "audit_events",
        # INTEGER on SQLite: the rowid itself (no second index; in-order scans)
        sa.Column("seq", _BIGINT, primary_key=True, autoincrement=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("ix_audit_events_run", "audit_events", ["run_id", "seq"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("tree_size", _BIGINT, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
        sa.Column("frontier", sa.Text, nullable=False),
    )
    bind = op.get_bind()
    tables = ("audit_events", "audit_checkpoints")
    if bind.dialect.name == "sqlite":
        for table in tables:
            for statement in _SQLITE_GUARDS.format(table=table).split(";\n"):
                if statement.strip():
                    op.execute(statement.strip() + (";" if "END" in statement else ""))
    elif bind.dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for table in tables:
            op.execute(_PG_GUARDS.format(table=table))
        op.execute(_PG_WRITER_ROLE)


def downgrade() -> None:
    raise RuntimeError("the audit trail is never dropped by a migration")
