"""Merchant registry (S10) and campaign overlays (S12): records, their histories.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merchants",
        sa.Column("account", sa.String(128), primary_key=True),
        sa.Column("company_name", sa.String(200), nullable=False),
        sa.Column("credit_code", sa.String(64), nullable=False),
        sa.Column("food_licence", sa.String(64), nullable=True),
        sa.Column("categories", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("licence_expires", sa.String(10), nullable=True),
        sa.Column("application_id", sa.String(160), nullable=False),
        sa.Column("applied_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_merchants_status", "merchants", ["status"])
    op.create_table(
        "merchant_history",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("step", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_merchant_history_account", "merchant_history", ["account", "seq"])
    op.create_table(
        "campaigns",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("starts_ms", sa.BigInteger, nullable=False),
        sa.Column("ends_ms", sa.BigInteger, nullable=False),
        sa.Column("ended_ms", sa.BigInteger, nullable=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "campaign_history",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("change", sa.String(20), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
    )
    op.create_index("ix_campaign_history_name", "campaign_history", ["name", "seq"])


def downgrade() -> None:
    for table in ("campaign_history", "campaigns", "merchant_history", "merchants"):
        op.drop_table(table)
