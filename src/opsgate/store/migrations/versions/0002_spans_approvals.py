"""Debug traces (redacted spans) and the durable approval queue.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spans",
        sa.Column("span_id", sa.String(16), primary_key=True),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("parent_span_id", sa.String(16)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("events", sa.Text, nullable=False),
    )
    op.create_index("ix_spans_run", "spans", ["run_id", "start_ns"])
    op.create_index("ix_spans_trace", "spans", ["trace_id"])
    op.create_index("ix_spans_start", "spans", ["start_ns"])
    op.create_table(
        "approvals",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("workflow", sa.String(128), nullable=False),
        sa.Column("invoker", sa.String(256), nullable=False),
        sa.Column("agent_id", sa.String(256), nullable=False),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("approver", sa.String(256)),
        sa.Column("reason", sa.Text),
        sa.Column("requested_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("decided_at", sa.Float),
        sa.Column("executed_at", sa.Float),
        sa.Column("run_state", sa.Text, nullable=False),
    )
    op.create_index("ix_approvals_status", "approvals", ["status", "requested_at"])
    op.create_index("ix_approvals_run", "approvals", ["run_id"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'opsgate_writer') "
            "THEN GRANT SELECT, INSERT, UPDATE, DELETE ON spans TO opsgate_writer; "
            "GRANT SELECT, INSERT, UPDATE ON approvals TO opsgate_writer; END IF; END $$;"
        )


def downgrade() -> None:
    op.drop_table("approvals")
    op.drop_table("spans")
