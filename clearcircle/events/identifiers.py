"""Keyed hashing of personal identifiers on arrival, so raw phones, devices and payment ids are never stored.

The hash is an HMAC (keyed), so a leaked database cannot be reversed by hashing every phone number.
Values are canonicalised first (digits of a phone, case of a device id) so the same identifier written two
ways links the same accounts.
"""

from __future__ import annotations

import hashlib
import hmac
import re

HASHED_FIELDS: tuple[str, ...] = ("device_id", "phone", "payment_id", "id_number")
PREFIX = "h1:"
_NON_DIGIT = re.compile(r"\D+")
_HASHED = re.compile(r"h1:[0-9a-f]{64}")


def canonical_identifier(field: str, value: str) -> str:
    """The form that is hashed: phones keep digits only (with a leading 86 dropped), others fold case."""
    if field == "phone":
        digits = _NON_DIGIT.sub("", value)
        if len(digits) == 13 and digits.startswith("86"):
            digits = digits[2:]
        return digits
    return value.strip().casefold()


def hash_value(field: str, value: str, key: bytes) -> str:
    """HMAC-SHA256 of the canonical value, tagged with the field so a phone never equals a device."""
    mac = hmac.new(key, f"{field}\x00{canonical_identifier(field, value)}".encode(), hashlib.sha256)
    return PREFIX + mac.hexdigest()


def hash_identifiers(body: dict[str, object], key: bytes) -> dict[str, object]:
    """A copy of an account_registered body with each identifier replaced by its keyed hash."""
    out = dict(body)
    for field in HASHED_FIELDS:
        value = out.get(field)
        if isinstance(value, str) and value and not _HASHED.fullmatch(value):  # hashing twice is a no-op
            out[field] = hash_value(field, value, key)
    return out
