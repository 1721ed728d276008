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

    def replay_line(self) -> dict[str, Any]:
        """The compact form `replay --out` writes: what a backtest compares."""
        return {
            "event_id": self.event_id,
            "verdict": self.verdict,
            "rules": self.rules,
            "shadow_rules": self.shadow_rules,
            "signals": self.signals,
        }
