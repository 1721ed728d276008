"""Read-only queries the console pages need and neither the store nor clearcircle.review offers. Writes never
happen here: they go through the core (clearcircle.review, the store's own methods)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import desc, select

from clearcircle.store import tables as t
from clearcircle.store.repository import Store


def account_decisions(store: Store, account: str, limit: int = 100) -> list[dict[str, Any]]:
    """Decisions about the account, newest first, each with its event time (`occurred_ms`) beside the payload
    (Store.account_history returns the payloads alone, which carry no time)."""
    with store.reads.connect() as conn:
        rows = conn.execute(select(t.decisions.c.occurred_ms, t.decisions.c.payload)
                            .where(t.decisions.c.subject == account)
                            .order_by(desc(t.decisions.c.occurred_ms)).limit(limit)).all()
    return [{**orjson.loads(r.payload), "occurred_ms": r.occurred_ms} for r in rows]
