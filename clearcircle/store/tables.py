"""Table definitions, the single source of truth for the schema (Alembic migrations mirror it).

Times are stored as integer milliseconds since the Unix epoch (UTC): portable across SQLite and
PostgreSQL, cheap to compare, and never ambiguous about time zones.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False, unique=True),
    Column("type", String(40), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("occurred_ms", BigInteger, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
)
Index("ix_events_actor_time", events.c.actor, events.c.occurred_ms)

decisions = Table(
    "decisions",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("verdict", String(20), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("pack_version", String(80), nullable=False),
    Column("occurred_ms", BigInteger, nullable=False),
    Column("decided_ms", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
)
Index("ix_decisions_subject", decisions.c.subject, decisions.c.occurred_ms)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("account_type", String(20), nullable=True),
    Column("registered_ms", BigInteger, nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
)

identity_links = Table(
    "identity_links",
    metadata,
    Column("kind", String(20), primary_key=True),
    Column("value_hash", String(80), primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("linked_ms", BigInteger, nullable=False),
)
Index("ix_identity_links_account", identity_links.c.account)

counter_hits = Table(
    "counter_hits",
    metadata,
    Column("key", String(256), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("at_ms", BigInteger, primary_key=True),  # the key order serves window scans: no second index
    Column("event_id", String(128), primary_key=True),
    Column("member", String(128), nullable=False),
)

cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", String(128), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("source", String(40), nullable=False),
    Column("rules", Text, nullable=False),
    Column("severity", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)
Index("ix_cases_status", cases.c.status, cases.c.created_ms)

audit = Table(
    "audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("name", String(128), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger, nullable=True),
    Column("active", Boolean, nullable=False, default=True),
)

# -- merchant registry (S10) and campaign overlays (S12): migration 0002 ------------------------------------------

merchants = Table(
    "merchants",
    metadata,
    Column("account", String(128), primary_key=True),
    Column("company_name", String(200), nullable=False),
    Column("credit_code", String(64), nullable=False),
    Column("food_licence", String(64), nullable=True),
    Column("categories", Text, nullable=False),  # JSON list
    Column("status", String(20), nullable=False),  # pending / verified / rejected / revoked (expired: computed)
    Column("reason", Text, nullable=True),
    Column("licence_expires", String(10), nullable=True),  # ISO date, Asia/Shanghai; valid through that day
    Column("application_id", String(160), nullable=False),
    Column("applied_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
Index("ix_merchants_status", merchants.c.status)

merchant_history = Table(
    "merchant_history",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("account", String(128), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("step", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("by", String(128), nullable=False),
    Column("detail", Text, nullable=False),  # JSON
)
Index("ix_merchant_history_account", merchant_history.c.account, merchant_history.c.seq)

campaigns = Table(
    "campaigns",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("spec", Text, nullable=False),  # JSON, as validated
    Column("starts_ms", BigInteger, nullable=False),
    Column("ends_ms", BigInteger, nullable=False),
    Column("ended_ms", BigInteger, nullable=True),  # ended early by staff
    Column("revision", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

campaign_history = Table(
    "campaign_history",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("change", String(20), nullable=False),  # created / changed / ended
    Column("revision", Integer, nullable=False),
    Column("by", String(128), nullable=False),
    Column("spec", Text, nullable=False),
)
Index("ix_campaign_history_name", campaign_history.c.name, campaign_history.c.seq)

# --- people in the loop (issue 6; migration 0003): reports, complaints, review queue, appeals --------------

# --- batch graph findings (issue 9; migration 0004) ---------------------------------------------------------
