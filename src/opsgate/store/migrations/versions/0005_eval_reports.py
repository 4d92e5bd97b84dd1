"""Evaluation reports, accepted baselines and human review verdicts (agent-eval).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_reports",
        sa.Column("report_id", sa.String(64), primary_key=True),
        sa.Column("suite", sa.String(128), nullable=False),
        sa.Column("suite_version", sa.Integer, nullable=False),
        sa.Column("model_router", sa.Text, nullable=False),
        sa.Column("trials", sa.Integer, nullable=False),
        sa.Column("shard", sa.String(32)),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=False),
        sa.Column("success_rate", sa.Float, nullable=False),
        sa.Column("cost_per_successful_task", sa.Float),
        sa.Column("unsafe_attempts", sa.Integer, nullable=False),
        sa.Column("gate_passed", sa.Boolean, nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_eval_reports_suite_started", "eval_reports", ["suite", "started_at"])
    op.create_table(
        "eval_baselines",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("suite", sa.String(128), nullable=False),
        sa.Column(
            "report_id",
            sa.String(64),
            sa.ForeignKey("eval_reports.report_id"),
            nullable=False,
        ),
        sa.Column("accepted_at", sa.Float, nullable=False),
        sa.Column("accepted_by", sa.String(256), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_eval_baselines_suite_accepted", "eval_baselines", ["suite", "accepted_at"])
    op.create_table(
        "eval_reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "report_id",
            sa.String(64),
            sa.ForeignKey("eval_reports.report_id"),
            nullable=False,
        ),
        sa.Column("task_id", sa.String(128), nullable=False),
        sa.Column("trial", sa.Integer, nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("reviewer", sa.String(256), nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint(
            "report_id", "task_id", "trial", "reviewer", name="uq_eval_reviews_item"
        ),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'opsgate_writer') "
            "THEN GRANT SELECT, INSERT ON eval_reports, eval_baselines TO opsgate_writer; "
            "GRANT SELECT, INSERT, UPDATE ON eval_reviews TO opsgate_writer; "
            "GRANT USAGE ON SEQUENCE eval_baselines_id_seq, eval_reviews_id_seq "
            "TO opsgate_writer; "
            "END IF; END $$;"
        )


def downgrade() -> None:
    op.drop_table("eval_reviews")
    op.drop_table("eval_baselines")
    op.drop_table("eval_reports")
