"""Table definitions, the single source of truth for the schema (Alembic migrations mirror it).

Times are stored as integer milliseconds since the Unix epoch (UTC): portable across SQLite and
PostgreSQL, cheap to compare, and never ambiguous about time zones.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text, literal_column

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
# an account's history (migration 0007): not the decisions' rows, whose subject is an event id
# (a literal, not a bound parameter: a planner matches a query to a partial index only by the literal)
NOT_DECISION = audit.c.kind != literal_column("'decision'")
Index("ix_audit_subject", audit.c.subject, audit.c.seq, sqlite_where=NOT_DECISION, postgresql_where=NOT_DECISION)

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

# The review queue works on `cases`: who claimed a case and when, and how it was decided (clearcircle.review).
for _column in (
    Column("claimed_by", String(128), nullable=True),
    Column("claimed_ms", BigInteger, nullable=True),
    Column("decided_by", String(128), nullable=True),
    Column("decided_ms", BigInteger, nullable=True),
    Column("decision", String(20), nullable=True),  # uphold / overturn / escalate (the latest)
    Column("reason", Text, nullable=True),
):
    cases.append_column(_column)
Index("ix_cases_account", cases.c.account, cases.c.status)

# Moderator decisions as labels on what raised the case (rules, shadow rules, signals, detectors): rule
# precision is measured from these. An appeal's decision labels the rules behind the appealed action.
case_labels = Table(
    "case_labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, nullable=True),
    Column("appeal_id", Integer, nullable=True),
    Column("kind", String(20), nullable=False),  # rule / shadow_rule / signal / detector
    Column("name", String(128), nullable=False),
    Column("outcome", String(20), nullable=False),  # upheld / overturned / escalated
    Column("at_ms", BigInteger, nullable=False),
    Column("by", String(128), nullable=False),
)
Index("ix_case_labels_name", case_labels.c.name, case_labels.c.outcome)

# S15: an account owner's appeal of the actions one event applied to their account, and its decision.
appeals = Table(
    "appeals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", String(128), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("statement", Text, nullable=False),
    Column("filed_by", String(128), nullable=False),
    Column("filed_ms", BigInteger, nullable=False),
    Column("status", String(20), nullable=False),  # open / upheld / overturned
    Column("decided_by", String(128), nullable=True),
    Column("decided_ms", BigInteger, nullable=True),
    Column("reason", Text, nullable=True),
    Column("changes", Text, nullable=True),  # JSON: what the overturn reversed
)
Index("ix_appeals_status", appeals.c.status, appeals.c.filed_ms)
Index("ix_appeals_account", appeals.c.account, appeals.c.event_id, unique=True)  # one appeal per action, ever

# --- batch graph findings (issue 9; migration 0004) ---------------------------------------------------------

# A run of `clearcircle detect`; the real-time path reads the findings of the latest finished run.
detector_runs = Table(
    "detector_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("engine", String(20), nullable=False),
    Column("since_ms", BigInteger, nullable=True),
    Column("started_ms", BigInteger, nullable=False),
    Column("finished_ms", BigInteger, nullable=True),
    Column("summary", Text, nullable=False),  # JSON: findings per detector
)

findings = Table(
    "findings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, nullable=False),
    Column("detector", String(40), nullable=False),
    Column("key", String(64), nullable=False),  # sha256 of detector, accounts and targets: the same group again
    Column("accounts", Text, nullable=False),  # JSON list
    Column("targets", Text, nullable=False),  # JSON list
    Column("score", Float, nullable=False),
    Column("evidence", Text, nullable=False),  # JSON
    Column("found_ms", BigInteger, nullable=False),
)
Index("ix_findings_run", findings.c.run_id, findings.c.detector)
Index("ix_findings_key", findings.c.detector, findings.c.key)

# One row per account a finding names, and in what role: what the real-time signals look up.
finding_accounts = Table(
    "finding_accounts",
    metadata,
    Column("finding_id", Integer, primary_key=True),
    Column("account", String(128), primary_key=True),
    Column("role", String(20), primary_key=True),  # member / target / organiser / evader / cluster
    Column("run_id", Integer, nullable=False),
    Column("detector", String(40), nullable=False),
    Column("value", String(128), nullable=True),  # evasion: the banned account evaded
    Column("at_ms", BigInteger, nullable=True),  # evasion: when that account was banned
    Column("score", Float, nullable=False),
)
Index("ix_finding_accounts_run", finding_accounts.c.run_id, finding_accounts.c.account)

# --- published policy packs (issue 10; migration 0005) -----------------------------------------------------

# Every publication of a pack, append-only; the row with the highest seq is the pack in force for every worker
# (clearcircle/policy/published.py). Publishing an older version again adds a row: that is a rollback.
published_packs = Table(
    "published_packs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("version", String(80), nullable=False),  # the pack's content hash (sha256:...), as in decisions
    Column("name", String(200), nullable=False),
    Column("files", Text, nullable=False),  # JSON {relative path: text}: exactly the files the version hashes
    Column("published_ms", BigInteger, nullable=False),
    Column("by", String(128), nullable=False),
)

# --- what each unit of events changed (issue 10; migration 0006) -------------------------------------------

# One row per committed unit of events: its audit span (since_seq, seq], the accounts and counter keys it
# wrote, and the identifier links it added (JSON lists). A worker keeps its working set from one unit to the
# next and, before the next, drops only what other workers changed since (store.unit.WorkingSet.sync); a
# span not covered by rows here (a staff step, a publication, a detector run) empties it. An account in
# `friends` changed only in ways two workers' units can merge at commit instead of one of them starting
# again (commutative: friends gained, an earlier first-seen time; store.unit.UnitOfWork.seen).
unit_log = Table(
    "unit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),  # audit seq of the unit's last row
    Column("since_seq", BigInteger, nullable=False),  # audit seq before the unit's first row
    Column("accounts", Text, nullable=False),
    Column("friends", Text, nullable=False),
    Column("keys", Text, nullable=False),
    Column("links", Text, nullable=False),  # identifier links added: [[kind, value hash], ...]
)
