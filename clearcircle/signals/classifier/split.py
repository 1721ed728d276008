"""The fixed train/test rule: a salted SHA-256 of the normalised text, so the split never changes.

A hash of the text (not a random shuffle, not row order) means: the same text is always on the same side,
whatever set it came from or whatever sets are added later; duplicates (deduplicated on the same normalised
text before splitting) can never straddle the line; and no seed or state has to be kept anywhere.

Tuning (regularisation, class weights, threshold) uses a second, independently salted rule that carves a
validation part out of the training part only: the test part is never looked at before `evaluate`. The same
hash cut into five slices gives the cross-validation folds of the training part (`validation_fold`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

__all__ = ["TEST_PERCENT", "VALIDATION_FOLDS", "VALIDATION_PERCENT", "bucket", "is_test", "is_validation", "split",
           "validation_fold"]

TEST_PERCENT = 20
VALIDATION_PERCENT = 20  # of the training part
VALIDATION_FOLDS = 100 // VALIDATION_PERCENT  # cross-validation folds of the training part; fold 0 = validation

T = TypeVar("T")


def bucket(text: str, salt: str) -> int:
    """0..99 from SHA-256 of `salt` + NUL + the text: uniform, stable across runs, machines and Python versions."""
    digest = hashlib.sha256(salt.encode() + b"\x00" + text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


def is_test(text: str) -> bool:
    """Whether a normalised text belongs to the held-out test part (20%)."""
    return bucket(text, "test") < TEST_PERCENT


def is_validation(text: str) -> bool:
    """Whether a normalised TRAINING text is held back for tuning (20% of training); meaningless for test texts."""
    return bucket(text, "validation") < VALIDATION_PERCENT


def validation_fold(text: str) -> int:
    """0..VALIDATION_FOLDS-1 for a normalised TRAINING text: the same salted hash cut into equal slices, so fold 0
    is exactly the `is_validation` part and every training text is held out by exactly one fold."""
    return bucket(text, "validation") // VALIDATION_PERCENT


def split(items: Iterable[T], text_of: Callable[[T], str] = lambda e: e.text) -> tuple[list[T], list[T]]:
    """(train, test) by `is_test` on each item's normalised text."""
    train: list[T] = []
    test: list[T] = []
    for item in items:
        (test if is_test(text_of(item)) else train).append(item)
    return train, test
