"""People in the loop (issue 6): reports and reputation, the review queue, appeals, the policy workbench and
transparency reports. This file is the package's public surface; the faces (API, CLI, console) call these.

Writes that touch account state take the `Service` (they run under the pipeline's lock, in one transaction with
their audit entries); reads take the `Store` and, where priorities or periods depend on it, the pack settings.
Every refusal raises a `ReviewError`: `NotFound` (404), `Conflict` (409), otherwise a bad argument (422).

Reports (S14) and complaints (S5)         clearcircle.review.reputation, clearcircle.signals.reports
    reputation(record, settings) -> float            Beta posterior mean of a reporter's reports being upheld
    weight_of(record, age_days, settings) -> float   what one report weighs (reputation x age factor)
Review queue                              clearcircle.review.queue
    list_cases(store, settings, status=, account=, source=, claimed_by=, limit=, offset=) -> list[Case]
    get_case(store, settings, case_id) -> Case
    case_detail(store, settings, case_id) -> dict    case, event, decision + evidence, account, reports, labels
    open_case(store, account, event_id, source, rules, severity) -> int     batch findings: source "detector"
    claim_case(service, case_id, moderator) -> Case
    assign_case(service, case_id, moderator, by) -> Case
    decide_case(service, case_id, "uphold"|"overturn"|"escalate", reason, by) -> dict
Appeals and reversals (S15)               clearcircle.review.appeals
    file_appeal(store, account, event_id, statement, by) -> (Appeal, created)
    list_appeals(store, status="open", account=None) -> list[Appeal]
    get_appeal(store, appeal_id) -> Appeal
    decide_appeal(service, appeal_id, "uphold"|"overturn", reason, by) -> (Appeal, changed)
Rule statistics and the workbench         clearcircle.review.stats, clearcircle.review.backtest
    rule_stats(store, pack, since_ms=None) -> list[RuleStats]      live hits, shadow hits, label precision
    backtest(store, candidate, since_ms=None, rule=None, baseline=None) -> BacktestReport
Transparency reports (S11)                clearcircle.review.transparency
    transparency_report(store, pack, month="2026-03") -> TransparencyReport
    TransparencyReport.html() -> str (charts inline), .charts() -> {name: PNG bytes}, .write(out_dir) -> files
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clearcircle.review.appeals import Appeal, decide_appeal, file_appeal, get_appeal, list_appeals
    from clearcircle.review.backtest import BacktestReport, backtest
    from clearcircle.review.errors import Conflict, NotFound, ReviewError
    from clearcircle.review.labels import LabelCounts
    from clearcircle.review.queue import (
        Case,
        assign_case,
        case_detail,
        claim_case,
        decide_case,
        get_case,
        list_cases,
        open_case,
    )
    from clearcircle.review.reputation import reputation, weight_of
    from clearcircle.review.stats import RuleStats, rule_stats
    from clearcircle.review.transparency import TransparencyReport, transparency_report

# name -> submodule; imported on first use, so the pipeline can import reputation without the rest
_EXPORTS = {
    "Appeal": "appeals", "decide_appeal": "appeals", "file_appeal": "appeals", "get_appeal": "appeals",
    "list_appeals": "appeals",
    "BacktestReport": "backtest", "backtest": "backtest",
    "Conflict": "errors", "NotFound": "errors", "ReviewError": "errors",
    "LabelCounts": "labels",
    "Case": "queue", "assign_case": "queue", "case_detail": "queue", "claim_case": "queue", "decide_case": "queue",
    "get_case": "queue", "list_cases": "queue", "open_case": "queue",
    "reputation": "reputation", "weight_of": "reputation",
    "RuleStats": "stats", "rule_stats": "stats",
    "TransparencyReport": "transparency", "transparency_report": "transparency",
}
__all__ = [
    "Appeal", "BacktestReport", "Case", "Conflict", "LabelCounts", "NotFound", "ReviewError", "RuleStats",
    "TransparencyReport", "assign_case", "backtest", "case_detail", "claim_case", "decide_appeal", "decide_case",
    "file_appeal", "get_appeal", "get_case", "list_appeals", "list_cases", "open_case", "reputation", "rule_stats",
    "transparency_report", "weight_of",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clearcircle.review' has no attribute {name!r}")
    return getattr(import_module(f"clearcircle.review.{_EXPORTS[name]}"), name)
