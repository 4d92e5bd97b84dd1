"""Audit retention: an append-only register of archived segments, and triggers that let
DELETE remove only events below the newest retention mark (nothing else, ever).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_SQLITE = """
DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN OLD.seq >= (SELECT COALESCE(MAX(upto), 0) FROM audit_retention)
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_retention_no_update BEFORE UPDATE ON audit_retention
BEGIN SELECT RAISE(ABORT, 'audit_retention is append-only'); END;
CREATE TRIGGER audit_retention_no_delete BEFORE DELETE ON audit_retention
BEGIN SELECT RAISE(ABORT, 'audit_retention is append-only'); END;
"""

_PG = """
CREATE OR REPLACE FUNCTION opsgate_audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND OLD.seq < (SELECT COALESCE(MAX(upto), 0) FROM audit_retention) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER audit_events_append_only ON audit_events;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION opsgate_audit_events_guard();
CREATE TRIGGER audit_retention_append_only BEFORE UPDATE OR DELETE ON audit_retention
  FOR EACH ROW EXECUTE FUNCTION opsgate_append_only();
CREATE TRIGGER audit_retention_no_truncate BEFORE TRUNCATE ON audit_retention
  FOR EACH STATEMENT EXECUTE FUNCTION opsgate_append_only();
DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'opsgate_writer')
  THEN GRANT SELECT, INSERT ON audit_retention TO opsgate_writer; END IF; END $$;
"""


def upgrade() -> None:
    op.create_table(
        "audit_retention",
        sa.Column("upto", _BIGINT, primary_key=True, autoincrement=False),
        sa.Column("archived_at", sa.Float, nullable=False),
        sa.Column("archive_sha256", sa.String(64), nullable=False),
        sa.Column("archive_name", sa.Text, nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for statement in _SQLITE.split(";\n"):
            statement = statement.strip().rstrip(";")
            if statement:
                op.execute(statement + (";" if statement.endswith("END") else ""))
    else:
        op.execute(_PG)


def downgrade() -> None:
    raise RuntimeError("the audit trail is never rewound by a migration")
