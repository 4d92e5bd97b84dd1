"""Indexes the console's pages read by (`bench/server.py`): the runs list newest first,
narrowed by purpose (production or eval) or by status, with its keyset cursor on
``(started_at, run_id)``; the approvals inbox's history, newest decision first. Without
them each page sorted the whole table.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_purpose_started", "runs", ["purpose", "started_at", "run_id"])
    op.create_index("ix_runs_status_started", "runs", ["status", "started_at", "run_id"])
    op.create_index("ix_approvals_decided", "approvals", ["decided_at", "request_id"])


def downgrade() -> None:
    op.drop_index("ix_approvals_decided", table_name="approvals")
    op.drop_index("ix_runs_status_started", table_name="runs")
    op.drop_index("ix_runs_purpose_started", table_name="runs")
