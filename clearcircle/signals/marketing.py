"""`text.marketing`: how much the text reads like marketing, 0..1.

Today a lexicon-weighted score (1 - prod(1 - weight) over the categories found, weights in pack.yaml); the
trained classifier replaces it behind the same name.
"""

from __future__ import annotations

from clearcircle.signals.context import SignalContext
from clearcircle.signals.registry import REGISTRY
from clearcircle.signals.text import TEXT_EVENTS, text_hits

signal = REGISTRY.signal


@signal("text.marketing", version=1, reads=TEXT_EVENTS, type=float,
        description="0..1 marketing score: 1 - prod(1 - weight) over the categories found")
def _marketing(ctx: SignalContext) -> float:
    weights: dict[str, float] = ctx.resources.get("category_weights", {})
    keep = 1.0
    for category in {fh.hit.category for fh in text_hits(ctx)}:
        keep *= 1.0 - weights.get(category, 0.0)
    return round(1.0 - keep, 4)
