"""An alert rule may demote its workflow when it fires (`opsgate alerts add --demote-to`):
a nullable `demote_to` stage on `alert_rules`; NULL keeps today's notify-only behaviour.

And the quota tally reads an index alone: `ix_quota_uses_tally` becomes `ix_quota_uses_window`
(quota_key, subject, released, at, amount), which covers the sum each reservation makes over
its window (the reservation runs on every call a quota counts; the table lookups per row were
half its cost).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_WINDOW = ["quota_key", "subject", "released", "at", "amount"]


def upgrade() -> None:
    with op.batch_alter_table("alert_rules") as batch:
        batch.add_column(sa.Column("demote_to", sa.String(32), nullable=True))
    op.create_index("ix_quota_uses_window", "quota_uses", _WINDOW)
    op.drop_index("ix_quota_uses_tally", "quota_uses")


def downgrade() -> None:
    op.create_index("ix_quota_uses_tally", "quota_uses", ["quota_key", "subject", "at"])
    op.drop_index("ix_quota_uses_window", "quota_uses")
    with op.batch_alter_table("alert_rules") as batch:
        batch.drop_column("demote_to")
