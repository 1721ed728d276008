"""The review package's one error hierarchy: every refusal a face turns into a 4xx or an exit code."""

from __future__ import annotations


class ReviewError(ValueError):
    """A review step that cannot be done as asked (HTTP 422 unless a subclass says otherwise)."""


class NotFound(ReviewError):
    """No such case, appeal, event or action (HTTP 404)."""


class Conflict(ReviewError):
    """The step conflicts with the stored state: decided already another way, claimed by someone else (409)."""
