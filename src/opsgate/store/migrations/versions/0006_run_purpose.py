"""Runs and cost entries say what they were for: ``production`` or ``eval`` (an
`agent-eval run` trial). Production roll-ups (cost, runs, budgets, drift, suites mined from
runs) leave eval runs out unless asked for. Rows written before are production.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("runs", "cost_entries"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("purpose", sa.String(16), nullable=False, server_default="production")
            )
    op.create_index("ix_cost_entries_purpose_at", "cost_entries", ["purpose", "at"])


def downgrade() -> None:
    op.drop_index("ix_cost_entries_purpose_at", "cost_entries")
    for table in ("runs", "cost_entries"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("purpose")
