"""`text.marketing`: the trained classifier's probability that the event's text is marketing/spam, 0..1.

Every text field the text signals read (`texts_of`: the post, its landing pages, a friend-request message, a
display name, a report note) is scored on its own and the highest probability is the value: one marketing
landing page behind an innocent caption is enough. The model ships inside the package and is loaded once, on
the first event that needs it (`shipped_model`); see `clearcircle/signals/classifier/` for how it is trained
and measured (`clearcircle train`, `clearcircle evaluate`).
"""

from __future__ import annotations

from clearcircle.signals.classifier import shipped_model
from clearcircle.signals.context import SignalContext
from clearcircle.signals.registry import REGISTRY
from clearcircle.signals.text import TEXT_EVENTS, texts_of

signal = REGISTRY.signal


@signal("text.marketing", version=2, reads=TEXT_EVENTS, type=float,
        description="0..1 probability that the text is marketing/spam (character n-gram classifier trained on "
                    "the labelled sets in shared/data), the maximum over the event's text fields")
def _marketing(ctx: SignalContext) -> float:
    texts = [text for _field, text in texts_of(ctx) if text]
    if not texts:
        return 0.0
    model = shipped_model()
    return max(model.score(text) for text in texts)
