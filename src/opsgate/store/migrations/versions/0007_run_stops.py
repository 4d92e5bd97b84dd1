"""Stop requests for live runs: the console (or `opsgate runs stop`) asks, the gateway that
runs the run polls and ends it before its next call, as `escalated` with reason
`interrupted`, the actor recorded.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_stops",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("requested_at", sa.Float, nullable=False),
        sa.Column("honoured_at", sa.Float),
    )
    op.create_index("ix_run_stops_open", "run_stops", ["honoured_at"])


def downgrade() -> None:
    op.drop_index("ix_run_stops_open", "run_stops")
    op.drop_table("run_stops")
