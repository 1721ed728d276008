"""Helpers shared by the HTTP API tests (tests/test_api.py, tests/test_api_roles.py).

`open_api(db_url, tmp_path, **settings)` builds a service, one API key per role and a TestClient over the
app, and closes them afterwards. `event(type, ...)` builds one valid event of any of the 14 types.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from clearcircle.api.app import create_app
from clearcircle.config import Settings
from clearcircle.service import Service, open_service

ROLES = ("integrator", "moderator", "admin")

# The event types of the wire contract (shared EVENTS.md), written out here rather than imported.
WIRE_TYPES = (
    "account_registered", "post_created", "share", "like", "friend_request", "friend_request_answered",
    "follow", "unfollow", "referral", "message_push", "report", "buyer_complaint", "merchant_application",
    "moderator_action",
)

T0 = datetime.fromisoformat("2026-03-02T09:14:05+08:00")

# One small valid body per type.
VALID_BODIES: dict[str, dict[str, Any]] = {
    "account_registered": {"account_type": "personal", "device_id": "dev-8812-a", "phone": "+8613800138000",
                           "display_name": "小王"},
    "post_created": {"surface": "moments", "text": "今天和家人去公园散步，天气很好。"},
    "share": {"item": "post-77", "destination": "moments", "item_owner": "u-2"},
    "like": {"item": "post-77"},
    "friend_request": {"target": "u-2", "message": "你好，我是小王"},
    "friend_request_answered": {"target": "u-2", "accepted": True},
    "follow": {"target": "pa-1"},
    "unfollow": {"target": "pa-1"},
    "referral": {"referee": "u-3", "reward": 5.0, "fee_paid": 0},
    "message_push": {"audience": 1200},
    "report": {"target": "u-2", "reason": "marketing", "item": "post-77", "note": "广告"},
    "buyer_complaint": {"seller": "u-2", "reason": "not_delivered", "order_ref": "o-1", "amount": 99.5},
    "merchant_application": {"company_name": "上海某某食品有限公司", "credit_code": "91310000MA1FL0000X",
                             "food_licence": "JY13101010000000", "categories": ["food"]},
    "moderator_action": {"target": "u-2", "action": "label", "reason": "marketing spam", "label": "marketing"},
}

# A post that fires the built-in rule induced-share-text (limit_reach, 7 days).
INDUCED_SHARE_TEXT = "转发到朋友圈集满30个赞送面膜"

_ids = itertools.count(1)


def rfc3339(at: datetime) -> str:
    return at.isoformat()


def event(type_: str, id_: str | None = None, *, actor: str = "u-1", occurred_at: datetime | str = T0,
          **body: Any) -> dict[str, Any]:
    """A valid event of `type_`; keyword arguments replace body fields."""
    return {
        "id": id_ or f"{type_}-{next(_ids)}",
        "type": type_,
        "occurred_at": occurred_at if isinstance(occurred_at, str) else rfc3339(occurred_at),
        "actor": actor,
        "body": {**copy.deepcopy(VALID_BODIES[type_]), **body},
    }


def induced_share_post(id_: str | None = None, *, actor: str = "u-1", occurred_at: datetime = T0) -> dict[str, Any]:
    return event("post_created", id_, actor=actor, occurred_at=occurred_at, surface="moments",
                 text=INDUCED_SHARE_TEXT)


RULE_FILE = """\
rules:
  - id: r1
    description: demo rule for validation
    norm: {spec: S2, citation: "a citation"}
    category: induced_share
    events: [post_created]
    when: any_of(text.categories, ["induced_share"])
    action: {type: limit_reach, days: 7}
    severity: 3
"""


def minimal_pack(rule_file: str = RULE_FILE) -> dict[str, str]:
    """Files of a small valid pack, as POST /v1/policy/validate takes them."""
    return {"pack.yaml": "name: mini\n", "rules/r.yaml": rule_file, "lists/induced_share.txt": "集满\n转发\n"}


@dataclass
class Api:
    svc: Service
    client: TestClient
    keys: dict[str, str] = field(default_factory=dict)

    def h(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}

    def post_event(self, ev: Any, role: str = "integrator") -> Any:
        return self.client.post("/v1/events", json=ev, headers=self.h(role))

    def post_batch(self, events: list[Any], role: str = "integrator") -> Any:
        return self.client.post("/v1/events/batch", json={"events": events}, headers=self.h(role))

    def account(self, account_id: str, at: datetime | None = None, role: str = "moderator") -> Any:
        params = {"at": rfc3339(at)} if at is not None else None
        return self.client.get(f"/v1/accounts/{account_id}", params=params, headers=self.h(role))

    def counts(self) -> dict[str, int]:
        return self.svc.store.counts()


@contextmanager
def open_api(db_url: str, tmp_path: Path, **settings: Any) -> Iterator[Api]:
    svc = open_service(Settings(db_url=db_url, key_file=tmp_path / "k", **settings))
    try:
        keys = {role: svc.store.create_key(role, f"test-{role}")[1] for role in ROLES}
        client = TestClient(create_app(svc))
        try:
            yield Api(svc, client, keys)
        finally:
            client.close()
    finally:
        svc.close()


def later(minutes: float = 0, days: float = 0, base: datetime = T0) -> datetime:
    return base + timedelta(minutes=minutes, days=days)
