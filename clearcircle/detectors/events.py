"""A small seeded JSONL event file with the same planted abuse, for the end-to-end path (replay, then detect).

The Parquet generator bypasses the store for scale; this one goes through it: wire-format events (EVENTS.md)
that `clearcircle replay` decides and stores, so `detect` exports them like production data. Planted, over
ten days of ordinary following, sharing and referring among 400 people and 40 public accounts:

- a block of 15 bought accounts that follow 6 small public accounts in 10-minute bursts (one straddles an
  hour boundary) and follow popular accounts at random times as camouflage; on day 9 all of them unfollow
  `pub-30` (no longer inflated) and 8 of them `pub-31` (still inflated by the other 7);
- an MLM tree under `mlm-0` paying three levels of upline, with a joining fee, beside a brand's one-level
  programme without a fee (`brand-0`);
- `seller-0`, banned by a moderator, then `seller-0b` registered on its device and `seller-0c` sharing a
  payment account with `seller-0b`; `rel-0` shared the device before the ban (not evasion);
- `post-promo`, a plain post shared by 40 people within 20 minutes straight from its owner `shop-1`, three
  hours after `shop-1`'s reward post (`post-prize`: share to Moments for a red packet), and `post-unlock`,
  whose own text asks to share it to unlock (`shop-2`), shared by 40 in 20 minutes; beside them
  `post-news`, shared as fast by 40 people with no trigger (its owner's prize post is four days older):
  not an induced-share burst;
- friendships among `u-0`..`u-99` (each asks 5 of them, who accept); `u-0` (sociable, most accept) and
  `u-1` (less liked: few accept) each ask 35 friends of friends in a day; `spam-0` asks 60 strangers in a
  day and 4 accept: only `spam-0` is friend-request spam.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from clearcircle.detectors.generate import Truth

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def generate_events(path: Path, seed: int = 7) -> Truth:
    """Write the events, in time order, one JSON object a line; return what was planted."""
    rng = random.Random(seed)
    events: list[tuple[datetime, dict[str, Any]]] = []

    def add(at: datetime, type_: str, actor: str, **body: Any) -> None:
        events.append((at, {"type": type_, "actor": actor, "body": body}))

    def at(minutes: float) -> datetime:
        return T0 + timedelta(minutes=minutes)

    publics = [f"pub-{i}" for i in range(40)]
    users = [f"u-{i}" for i in range(400)]
    bought = [f"buy-{i}" for i in range(15)]
    for i, p in enumerate(publics):
        add(at(i * 0.01), "account_registered", p, account_type="subscription")
    for i, u in enumerate(users):
        add(at(1 + i * 0.01), "account_registered", u, account_type="personal", device_id=f"dev-{u}",
            phone=f"1380000{i:04d}")
    for i, b in enumerate(bought):
        add(at(10 + i * 0.01), "account_registered", b, account_type="personal", device_id=f"dev-{b}")
    day = 24 * 60
    weights = [1 / (r + 2) for r in range(len(publics))]
    for u in users:  # ordinary following: popular accounts get most followers
        for p in set(rng.choices(publics, weights, k=rng.randint(1, 8))):
            add(at(rng.uniform(60, 10 * day)), "follow", u, target=p)
    clients = publics[30:36]
    for n, c in enumerate(clients):  # bursts of bought followers; the first straddles an hour boundary
        start = (2 + n) * day + (55 if n == 0 else 10)
        for b in bought:
            add(at(start + rng.uniform(0, 10)), "follow", b, target=c)
    for b in bought:  # camouflage
        for p in rng.sample(publics[:5], 3):
            add(at(rng.uniform(60, 10 * day)), "follow", b, target=p)

    for b in bought:  # the service ends: every bought follower leaves pub-30, eight leave pub-31
        add(at(8 * day + 30 + rng.uniform(0, 60)), "unfollow", b, target=clients[0])
    for b in bought[:8]:
        add(at(8 * day + 30 + rng.uniform(0, 60)), "unfollow", b, target=clients[1])

    truth = Truth(lockstep_accounts=set(bought), lockstep_targets=set(clients[1:]))
    # MLM: three levels of upline paid per recruit, a joining fee
    parent: dict[str, str] = {}
    frontier, members, t = ["mlm-0"], ["mlm-0"], 2 * day
    add(at(t), "account_registered", "mlm-0", account_type="personal")
    for level in range(1, 4):
        nxt = []
        for p in frontier:
            for k in range(3 if level < 3 else 2):
                c = f"{p}-{k}"
                t += 7
                add(at(t), "account_registered", c, account_type="personal")
                up, paid = p, 1
                while up is not None and paid <= 3:
                    add(at(t + paid), "referral", up, referee=c, reward=round(120 / paid, 2),
                        fee_paid=398.0 if paid == 1 else None)
                    up, paid = parent.get(up), paid + 1
                parent[c] = p
                nxt.append(c)
                members.append(c)
        frontier = nxt
    truth.mlm_members, truth.mlm_organisers = set(members), {"mlm-0"}
    add(at(5), "account_registered", "brand-0", account_type="service")
    customers = rng.sample(users, 30)
    for c in customers:  # a one-level programme: paid per direct recruit, nobody pays to join
        add(at(rng.uniform(day, 3 * day)), "referral", "brand-0", referee=c, reward=10.0)
    for c in customers[:5]:
        add(at(rng.uniform(4 * day, 5 * day)), "referral", c, referee=rng.choice(users), reward=10.0)

    # ban evasion
    add(at(20), "account_registered", "seller-0", account_type="personal", device_id="dev-seller", phone="13912345678")
    add(at(30), "account_registered", "rel-0", account_type="personal", device_id="dev-seller")
    add(at(3 * day), "moderator_action", "mod-1", target="seller-0", action="ban", reason="counterfeit goods")
    add(at(3 * day + 60), "account_registered", "seller-0b", account_type="personal", device_id="dev-seller",
        payment_id="pay-77")
    add(at(3 * day + 120), "account_registered", "seller-0c", account_type="personal", payment_id="pay-77")
    truth.evaders = {"seller-0b", "seller-0c"}

    # shares: induced bursts tied to their trigger, a fast burst with none, ordinary sharing with reshares
    for owner in ("shop-1", "shop-2"):
        add(at(40), "account_registered", owner, account_type="personal")

    def post(minutes: float, owner: str, post_id: str, text: str) -> None:
        add(at(minutes), "post_created", owner, surface="moments", text=text)
        events[-1][1]["id"] = post_id

    def burst(start: float, item: str, owner: str) -> None:
        for u in rng.sample(users, 40):
            add(at(start + rng.uniform(0, 20)), "share", u, item=item, destination="moments", item_owner=owner)

    post(6 * day - 130, "shop-1", "post-prize", "转发朋友圈即送红包，截图发客服领取")
    post(6 * day + 20, "shop-1", "post-promo", "新品上市，欢迎选购")
    burst(6 * day + 50, "post-promo", "shop-1")
    post(7 * day, "shop-2", "post-unlock", "精彩内容，分享到朋友圈解锁全文")
    burst(7 * day + 60, "post-unlock", "shop-2")
    post(3 * day + 600, "u-5", "post-old-prize", "转发抽奖，送三台手机")
    post(7 * day + 600, "u-5", "post-news", "今天下大雪了，路上小心")
    burst(7 * day + 620, "post-news", "u-5")
    truth.burst_items = {"post-promo", "post-unlock"}

    # friend requests: circles among u-0..u-99, two sociable people, one spammer
    def ask(minutes: float, src: str, dst: str, accepted: bool) -> None:
        add(at(minutes), "friend_request", src, target=dst)
        if accepted:
            add(at(minutes + rng.uniform(5, 120)), "friend_request_answered", dst, target=src, accepted=True)

    friends: dict[str, set[str]] = {u: set() for u in users[:100]}
    for u in users[:100]:
        for v in rng.sample(users[:100], 5):
            if v != u and v not in friends[u]:
                ask(rng.uniform(day, 3 * day), u, v, True)
                friends[u].add(v)
                friends[v].add(u)
    for n, sociable in enumerate(("u-0", "u-1")):
        fof = sorted({w for f in friends[sociable] for w in friends[f]} - friends[sociable] - {sociable})
        for k, v in enumerate(rng.sample(fof, min(35, len(fof)))):
            ask(5 * day + 60 + rng.uniform(0, 600), sociable, v, k < (30 if n == 0 else 4))
    add(at(45), "account_registered", "spam-0", account_type="personal")
    for k, v in enumerate(rng.sample(users[200:], 60)):
        ask(5 * day + 60 + rng.uniform(0, 600), "spam-0", v, k < 4)
    truth.friend_spammers = {"spam-0"}
    share_no = 0
    for i in range(60):
        item, prev = f"post-{i}", []
        for _ in range(rng.randint(1, 6)):
            share_no += 1
            sid = f"share-{share_no}"
            src = rng.choice(prev) if prev and rng.random() < 0.5 else item
            add(at(rng.uniform(day, 9 * day)), "share", rng.choice(users), item=src, destination="moments")
            events[-1][1]["id"] = sid
            prev.append(sid)

    events.sort(key=lambda e: e[0])
    with Path(path).open("wb") as fh:
        for n, (when, ev) in enumerate(events):
            wire = {"id": ev.get("id", f"ev-{n}"), "type": ev["type"], "occurred_at": when.isoformat(),
                    "actor": ev["actor"], "body": {k: v for k, v in ev["body"].items() if v is not None}}
            fh.write(orjson.dumps(wire) + b"\n")
    return truth
