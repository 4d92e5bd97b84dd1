"""Alert rules per workflow (`opsgate alerts`, the console's Alerts page) and every webhook
delivery attempt made for them. Webhook secrets are never stored: a rule names the
environment variable that holds its secret.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("rule_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("workflow", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("window_days", sa.Integer, nullable=False),
        sa.Column("sinks", sa.String(64), nullable=False),
        sa.Column("webhook_url", sa.Text),
        sa.Column("webhook_secret_env", sa.String(128)),
        sa.Column("renotify_minutes", sa.Integer, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("updated_at", sa.Float),
        sa.Column("updated_by", sa.String(256)),
        sa.Column("deleted_at", sa.Float),
        sa.Column("deleted_by", sa.String(256)),
    )
    op.create_index("ix_alert_rules_workflow", "alert_rules", ["workflow"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("rule_id", _ID, nullable=False),
        sa.Column("firing_id", sa.String(32), nullable=False),
        sa.Column("workflow", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("url_host", sa.String(256), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_alert_deliveries_rule_at", "alert_deliveries", ["rule_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_rule_at", "alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alert_rules_workflow", "alert_rules")
    op.drop_table("alert_rules")
