"""Quotas across runs (`quotas:` in a workflow): each allowed call's share of each quota it
counts against, reserved before it runs so that calls in flight count, released when it
never runs.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_uses",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("quota_key", sa.String(256), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("released", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_quota_uses_tally", "quota_uses", ["quota_key", "subject", "at"])
    op.create_index("ix_quota_uses_call", "quota_uses", ["run_id", "call_id"])


def downgrade() -> None:
    op.drop_index("ix_quota_uses_call", "quota_uses")
    op.drop_index("ix_quota_uses_tally", "quota_uses")
    op.drop_table("quota_uses")
