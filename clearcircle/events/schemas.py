"""Versioned pydantic models of every event type, and one parser that names the failing field.

One envelope (`id`, `type`, `occurred_at`, `actor`, `body`) with a body model per type; the union is
discriminated on `type` so an unknown type is refused before any body is looked at.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

SCHEMA_VERSION = 1
MAX_TEXT = 20_000
MAX_SHORT = 2_000
MAX_IMAGE_B64 = 4 * 1024 * 1024

# ids are stored in indexed columns: no control characters (PostgreSQL text cannot even hold NUL)
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
Short = Annotated[str, StringConstraints(max_length=MAX_SHORT)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Money = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class AccountRegisteredBody(_Model):
    account_type: Literal["personal", "subscription", "service"]
    device_id: Short | None = None
    phone: Short | None = None
    payment_id: Short | None = None
    id_number: Short | None = None
    display_name: Short | None = None


class Link(_Model):
    url: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SHORT)]
    landing_text: Text | None = None


class Image(_Model):
    data_base64: Annotated[str, StringConstraints(min_length=1, max_length=MAX_IMAGE_B64)]


class PostCreatedBody(_Model):
    surface: Literal["moments", "article", "comment"]
    text: Text
    links: Annotated[list[Link], Field(max_length=20)] = []
    images: Annotated[list[Image], Field(max_length=9)] = []


class ShareBody(_Model):
    item: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SHORT)]
    destination: Literal["moments", "group", "chat"]
    item_owner: Id | None = None


class LikeBody(_Model):
    item: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SHORT)]


class FriendRequestBody(_Model):
    target: Id
    message: Short | None = None


class FriendRequestAnsweredBody(_Model):
    target: Id
    accepted: bool


class FollowBody(_Model):
    target: Id


class ReferralBody(_Model):
    referee: Id
    reward: Money | None = None
    fee_paid: Money | None = None


class MessagePushBody(_Model):
    audience: Annotated[int, Field(ge=0, le=2_000_000_000)]


class ReportBody(_Model):
    target: Id
    reason: Literal["marketing", "induced_share", "mlm", "counterfeit", "food", "fraud", "other"]
    item: Short | None = None
    note: Short | None = None


class BuyerComplaintBody(_Model):
    seller: Id
    reason: Literal["counterfeit", "not_delivered", "not_as_described", "other"]
    order_ref: Short | None = None
    amount: Money | None = None


class MerchantApplicationBody(_Model):
    company_name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    credit_code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    food_licence: Annotated[str, StringConstraints(max_length=64)] | None = None
    categories: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=64)]],
                          Field(max_length=50)]


class ModeratorActionBody(_Model):
    target: Id
    action: Literal["label", "limit_reach", "remove", "restrict", "suspend", "ban", "lift"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SHORT)]
    duration_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    label: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    feature: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class Event(_Model):
    """The envelope shared by every event type; `type` and `body` are set by each subclass."""

    id: Id
    occurred_at: AwareDatetime
    actor: Id
    schema_version: Literal[1] = 1

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        try:
            utc = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("timestamp out of range") from None
        if not 1970 <= utc.year <= 2200:  # stored as epoch milliseconds; anything else is a client bug
            raise ValueError("timestamp must be between 1970 and 2200")
        return utc

    def wire(self) -> dict[str, Any]:
        """The event as it goes on the wire and into the store (JSON-ready, UTC timestamp)."""
        return self.model_dump(mode="json", exclude_defaults=False)


def _envelope(type_name: str, body: type[_Model]) -> type[Event]:
    return type(  # a class per type keeps the union discriminated on `type`
        "".join(p.title() for p in type_name.split("_")) + "Event",
        (Event,),
        {"__annotations__": {"type": Literal[type_name], "body": body}, "__module__": __name__},
    )


_BODIES: dict[str, type[_Model]] = {
    "account_registered": AccountRegisteredBody,
    "post_created": PostCreatedBody,
    "share": ShareBody,
    "like": LikeBody,
    "friend_request": FriendRequestBody,
    "friend_request_answered": FriendRequestAnsweredBody,
    "follow": FollowBody,
    "unfollow": FollowBody,
    "referral": ReferralBody,
    "message_push": MessagePushBody,
    "report": ReportBody,
    "buyer_complaint": BuyerComplaintBody,
    "merchant_application": MerchantApplicationBody,
    "moderator_action": ModeratorActionBody,
}
EVENT_CLASSES: dict[str, type[Event]] = {name: _envelope(name, body) for name, body in _BODIES.items()}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_CLASSES)

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    Annotated[Union[tuple(EVENT_CLASSES.values())], Field(discriminator="type")]  # noqa: UP007
)


class EventError(ValueError):
    """An event was refused; `errors` lists each problem with its dotted field path."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def _path(loc: tuple[Any, ...]) -> str:
    # pydantic puts the discriminator tag before an event's fields: ('post_created', 'body', 'text')
    parts = [str(p) for i, p in enumerate(loc) if not (p in EVENT_CLASSES and (i == 0 or isinstance(loc[i - 1], int)))]
    return ".".join(parts) or "(event)"


def _from_validation(exc: ValidationError) -> EventError:
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        message = err["msg"]
        if err["type"] == "json_invalid":
            field, message = "(event)", f"invalid JSON: {err.get('ctx', {}).get('error', message)}"
        elif err["type"] == "union_tag_invalid":
            message = f"unknown event type; expected one of: {', '.join(EVENT_TYPES)}"
            field = "type"
        elif err["type"] == "union_tag_not_found":
            field = "type"
            message = "field required"
        else:
            field = _path(err["loc"])
        errors.append({"field": field, "message": message, "type": err["type"]})
    return EventError(errors)


def parse_event(data: Any) -> Event:
    """Validate one decoded JSON object into its event model, or raise EventError naming the field.

    Goes through JSON so that validation is strict in the same way for every face: a string is never
    coerced into a number or a boolean, a timestamp must be an RFC 3339 string.
    """
    if not isinstance(data, dict):
        raise EventError([{"field": "(event)", "message": "an event must be a JSON object", "type": "type"}])
    try:  # stdlib json keeps NaN and huge integers as tokens, so the field that holds them is named
        raw = json.dumps(data, ensure_ascii=False, default=_no_json)
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise EventError([{"field": "(event)", "message": f"not JSON-encodable: {exc}", "type": "json"}]) from None
    return parse_event_json(raw)


def _no_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def parse_event_json(raw: bytes | str) -> Event:
    """Decode and validate one JSON text (a request body or a JSONL line) in one strict pass (pydantic-core)."""
    try:
        return EVENT_ADAPTER.validate_json(raw, strict=True)
    except ValidationError as exc:
        raise _from_validation(exc) from None


class _Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Annotated[Union[tuple(EVENT_CLASSES.values())], Field(discriminator="type")]]  # noqa: UP007


_BATCH_ADAPTER: TypeAdapter[_Batch] = TypeAdapter(_Batch)


def parse_batch_json(raw: bytes | str, max_events: int) -> list[Event]:
    """Validate a `{"events": [...]}` body in one strict pass; errors are named `events.N.field`."""
    try:
        batch = _BATCH_ADAPTER.validate_json(raw, strict=True)
    except ValidationError as exc:
        errors = _from_validation(exc).errors
        for err in errors:  # a body that is not {"events": [...]} at all
            if err["field"] == "(event)" and err["type"] != "json_invalid":
                err.update(field="events", message='expected a JSON object {"events": [...]}')
        raise EventError(errors) from None
    if len(batch.events) > max_events:
        raise EventError([{"field": "events", "message": f"at most {max_events} events per batch", "type": "size"}])
    return batch.events


def utc_now() -> datetime:
    """Wall-clock time in UTC; events carry their own time, this is only for reads."""
    return datetime.now(UTC)
