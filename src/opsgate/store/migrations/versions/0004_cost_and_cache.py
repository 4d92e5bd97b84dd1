"""The cost ledger and the model response cache.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cost_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("workflow", sa.String(128), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("role", sa.String(32)),
        sa.Column("model", sa.String(256)),
        sa.Column("tool", sa.String(128)),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cached_input_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("estimate", sa.Boolean, nullable=False),
        sa.Column("latency_s", sa.Float, nullable=False),
        sa.Column("cache_hit", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
    )
    op.create_index("ix_cost_entries_run", "cost_entries", ["run_id"])
    op.create_index("ix_cost_entries_workflow_at", "cost_entries", ["workflow", "at"])
    op.create_table(
        "model_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'opsgate_writer') "
            "THEN GRANT SELECT, INSERT ON cost_entries TO opsgate_writer; "
            "GRANT USAGE ON SEQUENCE cost_entries_id_seq TO opsgate_writer; "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON model_cache TO opsgate_writer; "
            "END IF; END $$;"
        )


def downgrade() -> None:
    op.drop_table("model_cache")
    op.drop_table("cost_entries")
