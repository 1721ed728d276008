"""`text.marketing`: the trained classifier's probability that the event's text is marketing/spam, 0..1.

Every text field the text signals read (`texts_of`: the post, its landing pages, a friend-request message, a
display name, a report note) is scored on its own and the highest probability is the value: one marketing
landing page behind an innocent caption is enough. The model ships inside the package and is loaded once, on
the first event that needs it (`shipped_model`); see `clearcircle/signals/classifier/` for how it is trained
and measured (`clearcircle train`, `clearcircle evaluate`).
"""

from __future__ import annotations

import functools

from clearcircle.signals.classifier import MarketingModel, shipped_model
from clearcircle.signals.context import SignalContext
from clearcircle.signals.registry import REGISTRY
from clearcircle.signals.text import KEPT_TEXT_CHARS, TEXT_EVENTS, TEXT_PASSES_KEPT, texts_of

signal = REGISTRY.signal


@signal("text.marketing", version=2, reads=TEXT_EVENTS, type=float,
        description="0..1 probability that the text is marketing/spam (character n-gram classifier trained on "
                    "the labelled sets in shared/data), the maximum over the event's text fields")
def _marketing(ctx: SignalContext) -> float:
    texts = [text for _field, text in texts_of(ctx) if text]
    if not texts:
        return 0.0
    model = shipped_model()
    return max(_kept_score(model, text) if len(text) <= KEPT_TEXT_CHARS else model.score(text) for text in texts)


@functools.lru_cache(maxsize=TEXT_PASSES_KEPT)
def _kept_score(model: MarketingModel, text: str) -> float:
    """A short text's score, kept like its text pass (signals.text): the same advert or greeting comes back
    many times, and a score is a pure function of the model and the text."""
    return model.score(text)
