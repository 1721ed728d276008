"""Verdicts in order of severity; the strongest verdict among the rules that fired is the event's."""

from __future__ import annotations

from typing import Literal

Verdict = Literal["allow", "label", "limit_reach", "review", "remove", "restrict", "suspend", "ban"]
VERDICTS: tuple[str, ...] = ("allow", "label", "limit_reach", "review", "remove", "restrict", "suspend", "ban")
_RANK = {v: i for i, v in enumerate(VERDICTS)}


def rank(verdict: str) -> int:
    return _RANK[verdict]


def strongest(verdicts: list[str] | tuple[str, ...]) -> str:
    """The most severe of the verdicts, `allow` when there are none."""
    return max(verdicts, key=_RANK.__getitem__, default="allow")
