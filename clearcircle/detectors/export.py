"""From the store to Parquet edge tables: the detectors' only input, the same on every engine.

The events table keeps each event's JSON; follows, referrals and shares are read from it (in id order, a
chunk at a time) and written with pyarrow. Identity links come from `identity_links` (hashed values only),
bans from each account's state (an active, unlifted ban: since when). `since_ms` keeps events from then on;
links and accounts are always whole (a ban from last year still counts).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from clearcircle.enforcement.state import AccountState
from clearcircle.store import tables as t
from clearcircle.store.repository import Store

CHUNK = 50_000
SCHEMAS = {
    "follows": pa.schema([("src", pa.string()), ("dst", pa.string()), ("ts", pa.int64())]),
    "referrals": pa.schema([("src", pa.string()), ("dst", pa.string()), ("ts", pa.int64()),
                            ("reward", pa.float64()), ("fee", pa.float64())]),
    "shares": pa.schema([("id", pa.string()), ("src", pa.string()), ("item", pa.string()), ("ts", pa.int64()),
                         ("owner", pa.string())]),
    "links": pa.schema([("account", pa.string()), ("kind", pa.string()), ("value", pa.string())]),
    "accounts": pa.schema([("account", pa.string()), ("registered_ms", pa.int64()), ("banned_ms", pa.int64())]),
}
_TYPES = {"follow": "follows", "referral": "referrals", "share": "shares"}


def _row(kind: str, event_id: str, actor: str, ts: int, body: dict) -> tuple:
    if kind == "follows":
        return (actor, body["target"], ts)
    if kind == "referrals":
        return (actor, body["referee"], ts, float(body.get("reward") or 0.0), float(body.get("fee_paid") or 0.0))
    return (event_id, actor, body["item"], ts, body.get("item_owner"))


class _Sink:
    def __init__(self, folder: Path, name: str) -> None:
        self.schema = SCHEMAS[name]
        self.writer = pq.ParquetWriter(folder / f"{name}.parquet", self.schema)
        self.rows: list[tuple] = []
        self.count = 0

    def add(self, row: tuple) -> None:
        self.rows.append(row)
        if len(self.rows) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            cols = list(zip(*self.rows, strict=True))
            self.writer.write_table(pa.table(
                {f.name: pa.array(c, type=f.type) for f, c in zip(self.schema, cols, strict=True)}, schema=self.schema))
            self.count += len(self.rows)
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()  # an empty file still has the schema: every detector can run on it


def export(store: Store, folder: Path, since_ms: int | None = None,
           progress: Callable[[str, int], None] = lambda _n, _c: None) -> dict[str, int]:
    """Write the five tables into `folder`; returns rows per table."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sinks = {name: _Sink(folder, name) for name in SCHEMAS}
    ev = t.events.c
    query = select(ev.id, ev.type, ev.actor, ev.occurred_ms, ev.payload).where(ev.type.in_(list(_TYPES)))
    if since_ms is not None:
        query = query.where(ev.occurred_ms >= since_ms)
    with store.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query.order_by(ev.seq))
        for n, r in enumerate(result, 1):
            kind = _TYPES[r.type]
            sinks[kind].add(_row(kind, r.id, r.actor, r.occurred_ms, orjson.loads(r.payload)["body"]))
            if n % CHUNK == 0:
                progress("events", n)
        il = t.identity_links.c
        for r in conn.execute(select(il.account, il.kind, il.value_hash)):
            sinks["links"].add((r.account, r.kind, r.value_hash))
        ac = t.accounts.c
        for r in conn.execute(select(ac.id, ac.registered_ms, ac.state)):
            ban = AccountState.model_validate_json(r.state).ban
            banned = ban.since_ms if ban is not None and ban.lifted_ms is None else None
            sinks["accounts"].add((r.id, r.registered_ms, banned))
    for sink in sinks.values():
        sink.close()
    return {name: sink.count for name, sink in sinks.items()}
