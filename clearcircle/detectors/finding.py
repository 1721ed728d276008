"""What every detector returns: a finding, the same shape on every engine and in `detect --out`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCORE_DIGITS = 6  # engines sum floats in different orders: scores are compared after rounding


@dataclass(frozen=True)
class Finding:
    """One group or item a detector implicates.

    `accounts` are the accounts it implicates (bought followers, MLM members, evaders, who induced a burst);
    `targets` where it applies (inflated accounts, the tree's organisers, the banned accounts evaded, the
    items); `score` ranks findings of one detector; `evidence` holds the figures a moderator reads.
    """

    detector: str
    accounts: tuple[str, ...]
    targets: tuple[str, ...]
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["accounts"], out["targets"] = list(self.accounts), list(self.targets)
        return out


def make(detector: str, accounts: object, targets: object, score: float, **evidence: Any) -> Finding:
    """A finding with ids as sorted strings and a rounded score, so two engines give equal values."""
    return Finding(detector, tuple(sorted({str(a) for a in accounts})), tuple(sorted({str(t) for t in targets})),
                   round(float(score), SCORE_DIGITS), evidence)


def ranked(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.score, f.targets, f.accounts))
