"""Which platform feature an event uses: what a feature restriction (e.g. no sharing for 7 days) blocks."""

from __future__ import annotations

from clearcircle.events.schemas import Event

_BY_TYPE = {
    "post_created": "post",
    "share": "share",
    "like": "like",
    "friend_request": "friend_request",
    "follow": "follow",
    "message_push": "push",
    "referral": "referral",
}
FEATURES: frozenset[str] = frozenset(_BY_TYPE.values()) | {"share_to_moments", "post_moments"}


_NARROW = {("share", "moments"): "share_to_moments", ("post_created", "moments"): "post_moments"}


def feature_of(event: Event) -> str | None:
    """The narrowest feature name for the event (sharing to moments is its own feature)."""
    if event.type == "share":
        return _NARROW.get((event.type, event.body.destination), "share")
    if event.type == "post_created":
        return _NARROW.get((event.type, event.body.surface), "post")
    return _BY_TYPE.get(event.type)


def features_of(event: Event) -> tuple[str, ...]:
    """Every feature the event uses, narrow and broad (a moments share is also a share)."""
    broad = _BY_TYPE.get(event.type)
    if broad is None:
        return ()
    narrow = feature_of(event)
    return (broad,) if narrow == broad else (narrow, broad)
