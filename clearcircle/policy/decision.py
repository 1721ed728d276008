"""The decision: one per event id, the engine's answer on the wire (see shared EVENTS.md)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clearcircle.policy.verdicts import Verdict


class Evidence(BaseModel):
    """Why a rule fired: a signal value, or a span of text as the user wrote it."""

    model_config = ConfigDict(extra="forbid")
    rule: str
    signal: str
    value: Any = None
    field: str | None = None
    span: tuple[int, int] | None = None
    text: str | None = None
    category: str | None = None


class AppliedAction(BaseModel):
    """One change enforcement made to an account because of this event."""

    model_config = ConfigDict(extra="forbid")
    account: str
    action: str
    rule: str
    detail: dict[str, Any] = Field(default_factory=dict)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: str
    verdict: Verdict
    rules: list[str]
    shadow_rules: list[str]
    signals: dict[str, Any]
    evidence: list[Evidence]
    pack_version: str
    subject: str
    actions: list[AppliedAction] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    campaigns: list[str] = Field(default_factory=list)  # S12: the campaign overlays that changed this decision



# What `replay --out` writes a line: the decision as EVENTS.md shows it, plus the campaign overlays that changed
# it (S12; absent when none did). The engine's bookkeeping (subject, actions, errors) stays in the store.
REPLAY_FIELDS = ("event_id", "verdict", "rules", "shadow_rules", "signals", "evidence", "pack_version")


def replay_line(decision: dict[str, Any]) -> dict[str, Any]:
    """One decision as `replay --out` writes it: a backtest diffs these lines, so the same decision always
    gives the same keys in the same order."""
    line = {k: decision[k] for k in REPLAY_FIELDS}
    if decision.get("campaigns"):
        line["campaigns"] = decision["campaigns"]
    return line
