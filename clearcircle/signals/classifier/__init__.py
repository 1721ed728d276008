"""The marketing/spam classifier behind `text.marketing`: data loading, the fixed split, training, the fast
scorer, obfuscation and evaluation. See `model.py` for the scorer and `train.py` for why it is built this way.

Only `shipped_model` is needed at run time; scikit-learn is imported by training and evaluation alone.
"""

from __future__ import annotations

import threading

from clearcircle.signals.classifier.model import DEFAULT_MODEL_PATH, MarketingModel

__all__ = ["DEFAULT_MODEL_PATH", "MarketingModel", "shipped_model"]

_lock = threading.Lock()
_model: MarketingModel | None = None


def shipped_model() -> MarketingModel:
    """The model file shipped in the package, loaded on first use and then shared (about 0.3 s, once)."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = MarketingModel.load(DEFAULT_MODEL_PATH)
    return _model
