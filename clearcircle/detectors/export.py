"""From the store to Parquet edge tables: the detectors' only input, the same on every engine.

The events table keeps each event's JSON; follows, unfollows, referrals and shares are read from it (in id
order, a chunk at a time) and written with pyarrow. Posts come with the flags their stored decision gave
them (`text.categories`: induced-sharing wording, reward wording), so the share-burst detector can link a
burst to its trigger without judging text again. Friend requests are joined with their answers (an
accepted request is a friendship from the answer on). Identity links come from `identity_links` (hashed
values only), bans from each account's state (an active, unlifted ban: since when). `since_ms` keeps events
from then on; links and accounts are always whole (a ban from last year still counts).
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
    "unfollows": pa.schema([("src", pa.string()), ("dst", pa.string()), ("ts", pa.int64())]),
    "referrals": pa.schema([("src", pa.string()), ("dst", pa.string()), ("ts", pa.int64()),
                            ("reward", pa.float64()), ("fee", pa.float64())]),
    "shares": pa.schema([("id", pa.string()), ("src", pa.string()), ("item", pa.string()), ("ts", pa.int64()),
                         ("owner", pa.string())]),
    "posts": pa.schema([("id", pa.string()), ("author", pa.string()), ("ts", pa.int64()), ("induced", pa.bool_()),
                        ("reward", pa.bool_())]),
    "friend_requests": pa.schema([("src", pa.string()), ("dst", pa.string()), ("ts", pa.int64()),
                                  ("accepted", pa.bool_()), ("accepted_ts", pa.int64())]),
    "links": pa.schema([("account", pa.string()), ("kind", pa.string()), ("value", pa.string())]),
    "accounts": pa.schema([("account", pa.string()), ("registered_ms", pa.int64()), ("banned_ms", pa.int64())]),
}
_TYPES = {"follow": "follows", "unfollow": "unfollows", "referral": "referrals", "share": "shares"}
INDUCED_CATEGORY = "induced_share"
# Lexicon categories that mean reward or prize wording. The built-in pack has no list of its own for it: its
# reward wording ("share for a reward or a draw", like-collecting for prizes) lives in induced_share, so there
# a reward post is flagged `induced`; a pack that keeps a separate list under one of these names gets `reward`.
REWARD_CATEGORIES = frozenset({"reward", "prize", "lottery", "giveaway"})


def _row(kind: str, event_id: str, actor: str, ts: int, body: dict) -> tuple:
    if kind in ("follows", "unfollows"):
        return (actor, body["target"], ts)
    if kind == "referrals":
        return (actor, body["referee"], ts, float(body.get("reward") or 0.0), float(body.get("fee_paid") or 0.0))
    return (event_id, actor, body["item"], ts, body.get("item_owner"))


def post_flags(decision_payload: str | None) -> tuple[bool, bool]:
    """(induced, reward) from a stored decision's `text.categories` signal; a post never decided has neither."""
    if not decision_payload:
        return False, False
    categories = set(orjson.loads(decision_payload).get("signals", {}).get("text.categories") or ())
    return INDUCED_CATEGORY in categories, bool(categories & REWARD_CATEGORIES)


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


class _Friendships:
    """Friend requests and their answers, joined once all are read: (src, dst, first ts, accepted, when).

    A pair asked several times is one request (the first); it is accepted when the target's latest answer to
    the requester, given after the request, accepts it. Held in memory: one entry per pair asked."""

    def __init__(self) -> None:
        self.asked: dict[tuple[str, str], int] = {}
        self.answers: dict[tuple[str, str], tuple[int, bool]] = {}

    def request(self, actor: str, body: dict, ts: int) -> None:
        key = (actor, body["target"])
        self.asked[key] = min(ts, self.asked.get(key, ts))

    def answer(self, actor: str, body: dict, ts: int) -> None:
        key = (body["target"], actor)  # the requester asked the one who answers
        if key not in self.answers or self.answers[key][0] <= ts:
            self.answers[key] = (ts, bool(body["accepted"]))

    def write(self, sink: _Sink) -> None:
        for (src, dst), ts in self.asked.items():
            at, accepted = self.answers.get((src, dst), (None, False))
            ok = accepted and at is not None and at >= ts
            sink.add((src, dst, ts, ok, at if ok else None))


def export(store: Store, folder: Path, since_ms: int | None = None,
           progress: Callable[[str, int], None] = lambda _n, _c: None) -> dict[str, int]:
    """Write every table of SCHEMAS into `folder`; returns rows per table."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sinks = {name: _Sink(folder, name) for name in SCHEMAS}
    friends = _Friendships()
    ev, de = t.events.c, t.decisions.c
    query = (select(ev.id, ev.type, ev.actor, ev.occurred_ms, ev.payload, de.payload.label("decision"))
             .select_from(t.events.outerjoin(t.decisions, (de.event_id == ev.id) & (ev.type == "post_created")))
             .where(ev.type.in_([*_TYPES, "post_created", "friend_request", "friend_request_answered"])))
    if since_ms is not None:
        query = query.where(ev.occurred_ms >= since_ms)
    with store.reads.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query.order_by(ev.seq))
        for n, r in enumerate(result, 1):
            if r.type == "post_created":
                sinks["posts"].add((r.id, r.actor, r.occurred_ms, *post_flags(r.decision)))
            elif r.type == "friend_request":
                friends.request(r.actor, orjson.loads(r.payload)["body"], r.occurred_ms)
            elif r.type == "friend_request_answered":
                friends.answer(r.actor, orjson.loads(r.payload)["body"], r.occurred_ms)
            else:
                kind = _TYPES[r.type]
                sinks[kind].add(_row(kind, r.id, r.actor, r.occurred_ms, orjson.loads(r.payload)["body"]))
            if n % CHUNK == 0:
                progress("events", n)
        friends.write(sinks["friend_requests"])
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
