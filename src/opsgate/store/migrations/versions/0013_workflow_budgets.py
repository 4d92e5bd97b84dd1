"""Per-workflow budget overrides set in the console (admin): `workflow_budgets`, one row per
workflow; a NULL field keeps the router file's value. Who set it and when; every change is
also an audit event.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflow_budgets",
        sa.Column("workflow", sa.String(128), primary_key=True),
        sa.Column("max_cost_per_task", sa.Float),
        sa.Column("daily_spend", sa.Float),
        sa.Column("set_by", sa.String(256), nullable=False),
        sa.Column("set_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workflow_budgets")
