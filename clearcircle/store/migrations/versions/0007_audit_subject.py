"""An index of the audit log by subject: an account's history without reading the whole log.

`Store.account_history` (the API's and the console's account pages, the review queue's case page) and an
appeal of a step that is not an event read an account's newest audit rows. Without this index both walk the
log from its newest row until they have found enough, which for a quiet account is the whole log: 65 ms at
115,000 rows on SQLite, a minute at a hundred million.

Partial: a decision's audit row has the event id as its subject, never an account, and is most of the log
(one a decided event); indexing only the other rows costs writers a tenth of a full index.

On a large PostgreSQL build it first without blocking writers, then upgrade (the migration then skips it):
`CREATE INDEX CONCURRENTLY ix_audit_subject ON audit (subject, seq) WHERE kind <> 'decision'` (docs/hardening.md).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    where = sa.text("kind <> 'decision'")  # the queries using it say so too (Store.account_history)
    op.create_index("ix_audit_subject", "audit", ["subject", "seq"], if_not_exists=True, sqlite_where=where,
                    postgresql_where=where)


def downgrade() -> None:
    op.drop_index("ix_audit_subject", table_name="audit")
