"""What each unit of events changed, so many workers keep their working sets without re-reading everything.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unit_log",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("since_seq", sa.BigInteger, nullable=False),
        sa.Column("accounts", sa.Text, nullable=False),
        sa.Column("friends", sa.Text, nullable=False),
        sa.Column("keys", sa.Text, nullable=False),
        sa.Column("links", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("unit_log")
