"""A seeded generator of realistic event mixes, for `clearcircle bench` and load tests.

Texts are short templates written for this purpose (ordinary friend-feed chatter and marketing phrases),
not rows of the labelled data sets.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

_ORDINARY = [
    "今天和家人去公园玩，天气真好",
    "周末一起吃火锅吧",
    "刚跑完十公里，累但开心",
    "新学期开始了，加油",
    "Great dinner with old friends tonight",
    "孩子第一次学会骑自行车",
]
_MARKETING = [
    "转发到朋友圈集满30个赞送面膜一盒，加微信领取",
    "高仿名牌包包，原单品质，微信下单包邮",
    "招代理，发展下线，三级分销躺赚，加盟费只要998",
    "自制手工月饼预订，私聊价格优惠",
    "分享到3个群即可查看全文",
    "Replica watches AAA quality, add me on wechat, discount today",
]
_TYPES = [
    ("post_created", 30), ("share", 20), ("like", 20), ("friend_request", 12), ("friend_request_answered", 6),
    ("follow", 5), ("referral", 2), ("message_push", 2), ("report", 2), ("buyer_complaint", 1),
]


def generate(n: int, *, accounts: int = 5000, seed: int = 7,
             start: datetime | None = None) -> Iterator[dict[str, Any]]:
    """`n` wire-format events over `accounts` accounts: registrations first, then a weighted mix."""
    rng = random.Random(seed)
    clock = start or datetime(2026, 3, 1, tzinfo=UTC)
    names, weights = zip(*_TYPES, strict=True)
    registered = min(accounts, n // 10 or 1)
    people = [f"u{i}" for i in range(registered)]
    activity = list(itertools.accumulate(1.0 / (rank + 1) ** 0.9 for rank in range(registered)))  # Zipf-like
    for i in range(registered):
        yield {"id": f"reg-{i}", "type": "account_registered", "occurred_at": clock.isoformat(),
               "actor": f"u{i}", "body": {"account_type": rng.choice(["personal"] * 8 + ["subscription", "service"]),
                                          "device_id": f"dev-{rng.randrange(accounts * 2)}"}}
    for i in range(n - registered):
        clock += timedelta(milliseconds=rng.randrange(1, 400))
        kind = rng.choices(names, weights)[0]
        actor = rng.choices(people, cum_weights=activity)[0]
        other = f"u{rng.randrange(registered)}"
        body: dict[str, Any]
        if kind == "post_created":
            text = rng.choice(_MARKETING if rng.random() < 0.2 else _ORDINARY)
            body = {"surface": rng.choice(["moments", "moments", "article", "comment"]), "text": text}
        elif kind in ("share", "like"):
            body = {"item": f"post-{rng.randrange(max(1, i))}"}
            if kind == "share":
                body |= {"destination": rng.choice(["moments", "group", "chat"]), "item_owner": other}
        elif kind == "friend_request":
            body = {"target": other, "message": rng.choice(["你好", "加个好友", "高仿包包加微信"])}
        elif kind == "friend_request_answered":
            body = {"target": other, "accepted": rng.random() < 0.7}
        elif kind == "follow":
            body = {"target": f"u{rng.randrange(20)}"}
        elif kind == "referral":
            body = {"referee": other, "reward": rng.choice([0, 10, 50]), "fee_paid": rng.choice([0, 0, 998])}
        elif kind == "message_push":
            body = {"audience": rng.randrange(100, 100_000)}
        elif kind == "report":
            body = {"target": other, "reason": rng.choice(["marketing", "mlm", "counterfeit", "other"])}
        else:
            body = {"seller": other, "reason": rng.choice(["counterfeit", "not_delivered"])}
        yield {"id": f"e-{i}", "type": kind, "occurred_at": clock.isoformat(), "actor": actor, "body": body}
