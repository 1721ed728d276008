"""Registry and food-sale signals (S10): the actor's merchant state and licence, prices and farm produce in text.

The pipeline hands each event's context the batch's merchant records (`attach`); a context without them (a
unit test, a tool) sees no record: state "none", not licensed.

Farm produce (S10: edible farm products need no food licence): a post is farm produce only when EVERY food
hit lies inside a `farm_produce` hit of the same text (土鸡蛋 is in both lists: covered; 农家 does not cover
农家自制腊肉, whose food hits are longer), so one farm word cannot launder a post that also sells cakes.
"""

from __future__ import annotations

from clearcircle.merchants.registry import MerchantBook, MerchantRecord
from clearcircle.signals.context import SignalContext
from clearcircle.signals.registry import REGISTRY
from clearcircle.signals.text import TEXT_EVENTS, text_hits

BOOK = "_merchant_book"
FOOD, FARM = "food", "farm_produce"

signal = REGISTRY.signal


def attach(ctx: SignalContext, book: MerchantBook) -> None:
    """Give the event's signals the batch's merchant records."""
    ctx.memo[BOOK] = book


def record_of(ctx: SignalContext) -> MerchantRecord | None:
    book: MerchantBook | None = ctx.memo.get(BOOK)
    return None if book is None else book.get(ctx.event.actor)


@signal("merchant.state", version=1, type=str,
        description="the actor's merchant record at the event's time: none / pending / verified / rejected / "
                    "revoked / expired (licence past its expiry date, Asia/Shanghai)")
def _state(ctx: SignalContext) -> str:
    record = record_of(ctx)
    return "none" if record is None else record.state_at(ctx.at_ms)


@signal("merchant.food_licensed", version=1, type=bool,
        description="the actor is a verified merchant with a food business licence valid on the event's day "
                    "(valid through its expiry date, Asia/Shanghai)")
def _food_licensed(ctx: SignalContext) -> bool:
    record = record_of(ctx)
    return record is not None and record.food_licensed_at(ctx.at_ms)


@signal("text.food_is_farm_produce", version=1, reads=TEXT_EVENTS, type=bool,
        description="the text has food hits and every one lies inside a farm_produce hit (primary farm produce, "
                    "exempt from the food licence)")
def _farm_produce(ctx: SignalContext) -> bool:
    hits = text_hits(ctx)
    food = [fh for fh in hits if fh.hit.category == FOOD]
    if not food:
        return False
    farm = [fh for fh in hits if fh.hit.category == FARM]
    return all(any(f.field == fh.field and f.hit.start <= fh.hit.start and fh.hit.end <= f.hit.end for f in farm)
               for fh in food)
