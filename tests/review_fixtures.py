"""Helpers shared by the people-in-the-loop tests (reports, queue, appeals, backtest, transparency)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.service import Service, open_service

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=CST)
INDUCED_SHARE = "转发到朋友圈集满30个赞送面膜"  # fires induced-share-text (limit_reach 7 days)
ORDINARY = "周末和朋友去爬山，风景很美"

_ids = count(1)


def open_svc(db_url: str, tmp_path: Path, **settings: Any) -> Service:
    return open_service(Settings(db_url=db_url, key_file=tmp_path / "k", **settings))


def ev(type_: str, actor: str, at: datetime = T0, id_: str | None = None, **body: Any):
    return parse_event({"id": id_ or f"rv-{type_}-{next(_ids)}", "type": type_, "occurred_at": at.isoformat(),
                        "actor": actor, "body": body})


def registered(account: str, at: datetime, account_type: str = "personal"):
    return ev("account_registered", account, at, account_type=account_type)


def report(reporter: str, target: str, at: datetime, reason: str = "marketing"):
    return ev("report", reporter, at, target=target, reason=reason)


def mod(action: str, target: str, at: datetime, id_: str | None = None, **extra: Any):
    return ev("moderator_action", "mod-1", at, id_=id_, target=target, action=action, reason="test", **extra)


def decide(svc: Service, *events: Any) -> list[dict[str, Any]]:
    return [o.decision for o in svc.pipeline.submit(list(events))]


def rows(svc: Service, sql: str, **params: Any) -> list[Any]:
    with svc.store.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def cases_of(svc: Service, account: str) -> list[Any]:
    return rows(svc, "select id, source, rules, status from cases where account = :a order by id", a=account)
