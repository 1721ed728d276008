"""Text signals: keyword-list categories and entities over the normalised text of posts, landing pages, messages.

The keyword lists belong to the policy pack (data policy staff extend), so the lexicon arrives through the
context's resources. One pass per text field: normalise once (the lexicon's normaliser), match the lexicon
and extract entities (`entities.py`) over that one normalisation. Contact entities (a phone number, a WeChat
ID, a QQ number) count as the `contact` category, as if a list term had hit, so a post that only gives a
number is still contact solicitation. Every hit keeps its span in the text as the user wrote it, for evidence.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clearcircle.signals.context import SignalContext
from clearcircle.signals.entities import CONTACT_KINDS, Entity, extract, kinds
from clearcircle.signals.lexicon import Hit, Lexicon
from clearcircle.signals.registry import REGISTRY
from clearcircle.signals.text_normalize import DEFAULT_NORMALIZER

TEXT_EVENTS = ("post_created", "friend_request", "account_registered", "report")
CONTACT = "contact"


@dataclass(frozen=True)
class FieldHit:
    """A lexicon hit located in one field of the event body (`body.text`, `body.links.0.landing_text`).

    Contact entities are FieldHits too (category "contact", the entity kind as the term), so evidence shows
    them beside the keyword hits without the policy layer knowing about entities.
    """

    field: str
    hit: Hit


@dataclass(frozen=True)
class FieldEntity:
    """An entity located in one field of the event body."""

    field: str
    entity: Entity


def texts_of(ctx: SignalContext) -> list[tuple[str, str]]:
    """(field path, text) pairs of the event that text signals read."""
    body = ctx.event.body
    match ctx.event.type:
        case "post_created":
            out = [("body.text", body.text)]
            out += [(f"body.links.{i}.landing_text", link.landing_text)
                    for i, link in enumerate(body.links) if link.landing_text]
            if body.images:  # text read in the images by OCR, once per image (only posts with images pay)
                from clearcircle.signals.media import image_texts

                out += image_texts(ctx)
            return out
        case "friend_request":
            return [("body.message", body.message)] if body.message else []
        case "account_registered":
            return [("body.display_name", body.display_name)] if body.display_name else []
        case "report":
            return [("body.note", body.note)] if body.note else []
    return []


def analyse_text(text: str, lexicon: Lexicon | None) -> tuple[list[Hit], list[Entity]]:
    """One text field's pass: normalise once, lexicon hits plus contact entities as hits, and all entities.

    The whole text path of a message (what `clearcircle bench-text` times). Hits are sorted by start.
    """
    normalizer = lexicon.normalizer if lexicon is not None else DEFAULT_NORMALIZER
    norm = normalizer.normalize(text)
    hits = lexicon.match(norm) if lexicon is not None else []
    entities = extract(norm, normalizer)
    contact = [Hit(CONTACT, e.kind, e.start, e.end, e.text) for e in entities if e.kind in CONTACT_KINDS]
    if contact:
        hits = sorted([*hits, *contact], key=lambda h: (h.start, h.end, h.category, h.term))
    return hits, entities


# Passes kept, of texts up to KEPT_TEXT_CHARS (so at most a few MB). A pass is a pure function of the text and
# the lexicon, and the same short text comes back again and again (a campaign's copy-pasted advert, a stock
# greeting): a repeat costs a look-up instead of a normalisation, a lexicon match and an entity scan.
TEXT_PASSES_KEPT = 2048
KEPT_TEXT_CHARS = 1000


@functools.lru_cache(maxsize=TEXT_PASSES_KEPT)
def _kept_pass(text: str, lexicon: Lexicon | None) -> tuple[tuple[Hit, ...], tuple[Entity, ...]]:
    """`analyse_text`, kept per (text, lexicon); tuples, so no event can change what the next one is given.
    A lexicon is keyed by identity: a newly published pack's lexicon never finds an older one's passes."""
    hits, entities = analyse_text(text, lexicon)
    return tuple(hits), tuple(entities)


def _text_pass(text: str, lexicon: Lexicon | None) -> tuple[Sequence[Hit], Sequence[Entity]]:
    return _kept_pass(text, lexicon) if len(text) <= KEPT_TEXT_CHARS else analyse_text(text, lexicon)


def _analyse(ctx: SignalContext) -> None:
    """The one text pass of an event, memoised: lexicon hits and entities of every field."""
    lexicon: Lexicon | None = ctx.resources.get("lexicon")
    hits: list[FieldHit] = []
    found: list[FieldEntity] = []
    for field, text in texts_of(ctx):
        field_hits, entities = _text_pass(text, lexicon)
        hits.extend(FieldHit(field, h) for h in field_hits)
        found.extend(FieldEntity(field, e) for e in entities)
    ctx.memo["_text_hits"] = hits
    ctx.memo["_text_entities"] = found


def text_hits(ctx: SignalContext) -> list[FieldHit]:
    """All lexicon hits of the event, plus its contact entities as `contact` hits; one shared pass."""
    if "_text_hits" not in ctx.memo:
        _analyse(ctx)
    return ctx.memo["_text_hits"]


def text_entities(ctx: SignalContext) -> list[FieldEntity]:
    """All entities of the event (phone, wechat, qq, email, url, short_link, price); one shared pass."""
    if "_text_entities" not in ctx.memo:
        _analyse(ctx)
    return ctx.memo["_text_entities"]


signal = REGISTRY.signal


@signal("text.categories", version=2, reads=TEXT_EVENTS, type=list,
        description="lexicon categories found in the event's text (induced_share, mlm, counterfeit, ...); "
                    "a phone number, WeChat ID or QQ number counts as contact")
def _categories(ctx: SignalContext) -> list[str]:
    return sorted({fh.hit.category for fh in text_hits(ctx)})


@signal("text.hit_count", version=2, reads=TEXT_EVENTS, type=int,
        description="lexicon hits in the text, contact entities included")
def _hit_count(ctx: SignalContext) -> int:
    return len(text_hits(ctx))


@signal("text.evidence", version=1, reads=TEXT_EVENTS, type=list,
        description="every hit as {field, span, text, category, term}: spans in the text as the user wrote it")
def _evidence(ctx: SignalContext) -> list[dict[str, Any]]:
    return [{"field": fh.field, "span": [fh.hit.start, fh.hit.end], "text": fh.hit.text,
             "category": fh.hit.category, "term": fh.hit.term} for fh in text_hits(ctx)]


@signal("text.contacts", version=1, reads=TEXT_EVENTS, type=int,
        description="distinct phone numbers, WeChat IDs and QQ numbers in the text")
def _contacts(ctx: SignalContext) -> int:
    return len({(fe.entity.kind, fe.entity.value) for fe in text_entities(ctx) if fe.entity.kind in CONTACT_KINDS})


@signal("text.entities", version=1, reads=TEXT_EVENTS, type=list,
        description="kinds of entity found: phone, wechat, qq, email, url, short_link, price")
def _entities(ctx: SignalContext) -> list[str]:
    return list(kinds([fe.entity for fe in text_entities(ctx)]))


@signal("text.has_price", version=1, reads=TEXT_EVENTS, type=bool,
        description="the text states a price (¥99, 99元, 99块, $5, 5 USD)")
def _has_price(ctx: SignalContext) -> bool:
    return any(fe.entity.kind == "price" for fe in text_entities(ctx))


@signal("text.has_links", version=1, reads=("post_created",), type=bool, description="the post carries links")
def _has_links(ctx: SignalContext) -> bool:
    return bool(ctx.event.body.links)


@signal("text.length", version=1, reads=TEXT_EVENTS, type=int, description="characters of text read")
def _length(ctx: SignalContext) -> int:
    return sum(len(t) for _f, t in texts_of(ctx))
