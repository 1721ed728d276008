"""Batch graph detectors (issue 9): findings and their runs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "detector_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("engine", sa.String(20), nullable=False),
        sa.Column("since_ms", sa.BigInteger, nullable=True),
        sa.Column("started_ms", sa.BigInteger, nullable=False),
        sa.Column("finished_ms", sa.BigInteger, nullable=True),
        sa.Column("summary", sa.Text, nullable=False),
    )
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("detector", sa.String(40), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("accounts", sa.Text, nullable=False),
        sa.Column("targets", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("found_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_findings_run", "findings", ["run_id", "detector"])
    op.create_index("ix_findings_key", "findings", ["detector", "key"])
    op.create_table(
        "finding_accounts",
        sa.Column("finding_id", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(128), primary_key=True),
        sa.Column("role", sa.String(20), primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("detector", sa.String(40), nullable=False),
        sa.Column("value", sa.String(128), nullable=True),
        sa.Column("at_ms", sa.BigInteger, nullable=True),
        sa.Column("score", sa.Float, nullable=False),
    )
    op.create_index("ix_finding_accounts_run", "finding_accounts", ["run_id", "account"])


def downgrade() -> None:
    for table in ("finding_accounts", "findings", "detector_runs"):
        op.drop_table(table)
