"""Text signals: keyword-list categories over the normalised text of posts, landing pages and messages.

The keyword lists belong to the policy pack (data policy staff extend), so the lexicon arrives through the
context's resources. Every hit keeps its span in the text as the user wrote it, for evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

from clearcircle.signals.context import SignalContext
from clearcircle.signals.lexicon import Hit, Lexicon
from clearcircle.signals.registry import REGISTRY

TEXT_EVENTS = ("post_created", "friend_request", "account_registered", "report")


@dataclass(frozen=True)
class FieldHit:
    """A lexicon hit located in one field of the event body (`body.text`, `body.links.0.landing_text`)."""

    field: str
    hit: Hit


def texts_of(ctx: SignalContext) -> list[tuple[str, str]]:
    """(field path, text) pairs of the event that text signals read."""
    body = ctx.event.body
    match ctx.event.type:
        case "post_created":
            out = [("body.text", body.text)]
            out += [(f"body.links.{i}.landing_text", link.landing_text)
                    for i, link in enumerate(body.links) if link.landing_text]
            return out
        case "friend_request":
            return [("body.message", body.message)] if body.message else []
        case "account_registered":
            return [("body.display_name", body.display_name)] if body.display_name else []
        case "report":
            return [("body.note", body.note)] if body.note else []
    return []


def text_hits(ctx: SignalContext) -> list[FieldHit]:
    """All lexicon hits of the event, memoised: every text signal shares one pass."""
    if "_text_hits" not in ctx.memo:
        lexicon: Lexicon | None = ctx.resources.get("lexicon")
        hits: list[FieldHit] = []
        if lexicon is not None:
            for field, text in texts_of(ctx):
                hits.extend(FieldHit(field, h) for h in lexicon.match(text))
        ctx.memo["_text_hits"] = hits
    return ctx.memo["_text_hits"]


signal = REGISTRY.signal


@signal("text.categories", version=1, reads=TEXT_EVENTS, type=list,
        description="lexicon categories found in the event's text (induced_share, mlm, counterfeit, ...)")
def _categories(ctx: SignalContext) -> list[str]:
    return sorted({fh.hit.category for fh in text_hits(ctx)})


@signal("text.hit_count", version=1, reads=TEXT_EVENTS, type=int, description="lexicon hits in the text")
def _hit_count(ctx: SignalContext) -> int:
    return len(text_hits(ctx))


@signal("text.has_links", version=1, reads=("post_created",), type=bool, description="the post carries links")
def _has_links(ctx: SignalContext) -> bool:
    return bool(ctx.event.body.links)


@signal("text.length", version=1, reads=TEXT_EVENTS, type=int, description="characters of text read")
def _length(ctx: SignalContext) -> int:
    return sum(len(t) for _f, t in texts_of(ctx))
