"""Policy packs published through the store (issue 10): every worker decides with the newest.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "published_packs",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(80), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("published_ms", sa.BigInteger, nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("published_packs")
