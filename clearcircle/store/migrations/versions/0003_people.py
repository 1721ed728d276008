"""People in the loop (issue 6): the review queue's columns on cases, moderator labels, appeals.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CASE_COLUMNS = (
    ("claimed_by", sa.String(128)),
    ("claimed_ms", sa.BigInteger),
    ("decided_by", sa.String(128)),
    ("decided_ms", sa.BigInteger),
    ("decision", sa.String(20)),
    ("reason", sa.Text),
)


def upgrade() -> None:
    for name, type_ in _CASE_COLUMNS:
        op.add_column("cases", sa.Column(name, type_, nullable=True))
    op.create_index("ix_cases_account", "cases", ["account", "status"])
    op.create_table(
        "case_labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, nullable=True),
        sa.Column("appeal_id", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
    )
    op.create_index("ix_case_labels_name", "case_labels", ["name", "outcome"])
    op.create_table(
        "appeals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("statement", sa.Text, nullable=False),
        sa.Column("filed_by", sa.String(128), nullable=False),
        sa.Column("filed_ms", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_ms", sa.BigInteger, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("changes", sa.Text, nullable=True),
    )
    op.create_index("ix_appeals_status", "appeals", ["status", "filed_ms"])
    op.create_index("ix_appeals_account", "appeals", ["account", "event_id"], unique=True)


def downgrade() -> None:
    op.drop_table("appeals")
    op.drop_table("case_labels")
    op.drop_index("ix_cases_account", table_name="cases")
    with op.batch_alter_table("cases") as batch:  # SQLite drops columns by rebuilding the table
        for name, _type in reversed(_CASE_COLUMNS):
            batch.drop_column(name)
