"""Plain values of the event body that rules compare against (surface, destination, money, audience)."""

from __future__ import annotations

from typing import Any

from clearcircle.signals.context import SignalContext
from clearcircle.signals.registry import REGISTRY

_FIELDS: tuple[tuple[str, str, str, type, str], ...] = (
    ("post.surface", "post_created", "surface", str, "moments / article / comment"),
    ("post.link_count", "post_created", "links", int, "links in the post"),
    ("post.image_count", "post_created", "images", int, "images in the post"),
    ("share.destination", "share", "destination", str, "moments / group / chat"),
    ("referral.reward", "referral", "reward", float, "yuan paid to the referrer for this recruit (0 if none)"),
    ("referral.fee_paid", "referral", "fee_paid", float, "yuan the referee paid to join (0 if none)"),
    ("push.audience", "message_push", "audience", int, "recipients of the push"),
    ("report.reason", "report", "reason", str, "reason given by the reporter"),
    ("complaint.reason", "buyer_complaint", "reason", str, "reason given by the buyer"),
    ("merchant.categories", "merchant_application", "categories", list, "categories the merchant sells"),
)


def _reader(field: str, kind: type) -> Any:
    def read(ctx: SignalContext) -> Any:
        value = getattr(ctx.event.body, field)
        if kind is int and isinstance(value, list):
            return len(value)
        if kind is float:
            return float(value or 0.0)
        return list(value) if kind is list else value

    return read


for _name, _type, _field, _kind, _desc in _FIELDS:
    REGISTRY.register_fn(_name, _reader(_field, _kind), version=1, reads=(_type,), type=_kind, description=_desc)
