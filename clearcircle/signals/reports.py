"""Report and complaint signals (S14, S5): reputation-weighted counts of distinct reporters and buyers.

The weights are recorded on the target by the pipeline's fact step (clearcircle.review.reputation) before
any rule runs, so the report being decided is already in them. Signals only add them up; pack.yaml
`reports` holds the thresholds, exposed as signals so a rule reads `reports.weight_7d >=
reports.escalate_weight` and its evidence shows both figures.
"""

from __future__ import annotations

from clearcircle.policy.rules import PackSettings
from clearcircle.review.reputation import weight_of
from clearcircle.signals.context import SignalContext
from clearcircle.signals.counters import DAY_MS
from clearcircle.signals.registry import REGISTRY


def _settings(ctx: SignalContext) -> PackSettings:
    settings = ctx.resources.get("settings")
    return settings if isinstance(settings, PackSettings) else PackSettings(name="default")


def _target(ctx: SignalContext) -> str:
    body = ctx.event.body
    return body.target if ctx.event.type == "report" else body.seller


def _marks(ctx: SignalContext, kind: str, days: int) -> list[tuple[str, float]]:
    key = f"_{kind}_{days}"
    if key not in ctx.memo:
        view = ctx.lookups.account(_target(ctx), ctx.at_ms)
        ctx.memo[key] = view.reported_within(kind, ctx.at_ms - days * DAY_MS)
    return ctx.memo[key]


@REGISTRY.signal("reports.weight_7d", version=1, reads=["report"], type=float,
                 description="reputation-weighted sum over distinct reporters of the target in 7 days")
def _reports_weight(ctx: SignalContext) -> float:
    return round(sum(w for _who, w in _marks(ctx, "reports", 7)), 6)


@REGISTRY.signal("reports.reporters_7d", version=1, reads=["report"], type=int,
                 description="distinct reporters of the target in 7 days (unweighted)")
def _reports_count(ctx: SignalContext) -> int:
    return len(_marks(ctx, "reports", 7))


@REGISTRY.signal("reports.escalate_weight", version=1, reads=["report"], type=float,
                 description="pack.yaml reports.escalate_weight: the weight of reporters that escalates a target")
def _reports_threshold(ctx: SignalContext) -> float:
    return _settings(ctx).reports.escalate_weight


@REGISTRY.signal("reports.reporter_weight", version=1, reads=["report", "buyer_complaint"], type=float,
                 description="what this report or complaint weighs: the reporter's reputation times age factor")
def _reporter_weight(ctx: SignalContext) -> float:
    view = ctx.lookups.account(ctx.event.actor, ctx.at_ms)
    return weight_of(view.reporting, view.age_days, _settings(ctx).reports)


@REGISTRY.signal("complaints.weight_30d", version=1, reads=["buyer_complaint"], type=float,
                 description="reputation-weighted sum over distinct buyers complaining of the seller in 30 days")
def _complaints_weight(ctx: SignalContext) -> float:
    return round(sum(w for _who, w in _marks(ctx, "complaints", 30)), 6)


@REGISTRY.signal("complaints.buyers_30d", version=1, reads=["buyer_complaint"], type=int,
                 description="distinct buyers complaining of the seller in 30 days (unweighted)")
def _complaints_count(ctx: SignalContext) -> int:
    return len(_marks(ctx, "complaints", 30))


@REGISTRY.signal("complaints.escalate_weight", version=1, reads=["buyer_complaint"], type=float,
                 description="pack.yaml reports.complaint_escalate_weight: the weight of buyers that opens a case")
def _complaints_threshold(ctx: SignalContext) -> float:
    return _settings(ctx).reports.complaint_escalate_weight
