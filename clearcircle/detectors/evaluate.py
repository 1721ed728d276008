"""Precision and recall of each detector against the generator's planted truth."""

from __future__ import annotations

from dataclasses import dataclass

from clearcircle.detectors.finding import Finding
from clearcircle.detectors.generate import Truth


@dataclass(frozen=True)
class Score:
    detector: str
    unit: str  # what is counted: accounts, items
    predicted: int
    planted: int
    hits: int

    @property
    def precision(self) -> float:
        return self.hits / self.predicted if self.predicted else (1.0 if not self.planted else 0.0)

    @property
    def recall(self) -> float:
        return self.hits / self.planted if self.planted else 1.0


def _score(detector: str, unit: str, predicted: set[str], planted: set[str]) -> Score:
    return Score(detector, unit, len(predicted), len(planted), len(predicted & planted))


def score(findings: dict[str, list[Finding]], truth: Truth) -> list[Score]:
    """One line per detector and unit: lockstep accounts and inflated targets, MLM members and organisers,
    evaders, burst items, friend spammers."""
    def accounts(name: str) -> set[str]:
        return {a for f in findings.get(name, []) for a in f.accounts}

    def targets(name: str) -> set[str]:
        return {t for f in findings.get(name, []) for t in f.targets}

    out = []
    if "lockstep" in findings:
        out += [_score("lockstep", "accounts", accounts("lockstep"), truth.lockstep_accounts),
                _score("lockstep", "targets", targets("lockstep"), truth.lockstep_targets)]
    if "mlm" in findings:
        out += [_score("mlm", "members", accounts("mlm"), truth.mlm_members),
                _score("mlm", "organisers", targets("mlm"), truth.mlm_organisers)]
    if "evasion" in findings:
        out.append(_score("evasion", "accounts", accounts("evasion"), truth.evaders))
    if "share_burst" in findings:
        out.append(_score("share_burst", "items", targets("share_burst"), truth.burst_items))
    if "friend_spam" in findings:
        out.append(_score("friend_spam", "accounts", accounts("friend_spam"), truth.friend_spammers))
    return out
