"""Reporter reputation (S14) and the report and complaint facts the pipeline records (S5).

A user report or a buyer complaint is a fact about its target: the pipeline records it in the target's state
before any rule runs (`record_report`), keyed by the reporter, so one reporter counts once per target however
often they report (the latest report stands). Its weight is the reporter's reputation when they filed it:

    reputation = (prior_upheld + upheld) / (prior_upheld + prior_overturned + upheld + overturned)

the mean of a Beta posterior over how moderators decided the cases the reporter's past reports led to
(pack.yaml `reports`), times an age factor for young accounts. Fresh accounts start low, so a crowd of sock
puppets weighs little; reporters whose reports keep being upheld grow heavier. Signals (signals/reports.py)
sum the weights; the pack decides what the sum does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clearcircle.enforcement.state import DAY_MS, AccountState, ReporterRecord, ReportMark
from clearcircle.policy.rules import ReportSettings

if TYPE_CHECKING:
    from clearcircle.events.schemas import Event
    from clearcircle.store.unit import UnitOfWork

KEEP_DAYS = 35  # marks older than the longest window read (complaints: 30 days) are dropped
MAX_MARKS = 2000  # per target and kind: a bounded state even under a flood of reports


def reputation(record: ReporterRecord | None, settings: ReportSettings) -> float:
    """The Beta posterior mean of a reporter's reports being upheld (the prior's mean with no history)."""
    upheld = record.upheld if record else 0
    overturned = record.overturned if record else 0
    a, b = settings.prior_upheld + upheld, settings.prior_overturned + overturned
    return a / (a + b)


def age_factor(age_days: float | None, settings: ReportSettings) -> float:
    """1 for an established account; a young one in proportion to its age, at least `min_age_factor`."""
    if settings.full_weight_age_days <= 0:
        return 1.0
    age = age_days or 0.0
    return max(settings.min_age_factor, min(1.0, age / settings.full_weight_age_days))


def weight_of(record: ReporterRecord | None, age_days: float | None, settings: ReportSettings) -> float:
    """What one report weighs: reputation times age factor, rounded so outputs are stable."""
    return round(reputation(record, settings) * age_factor(age_days, settings), 6)


def report_weight(reporter: AccountState, at_ms: int, settings: ReportSettings) -> float:
    """What one report by this account weighs at `at_ms`: nothing while it is banned or suspended."""
    view = reporter.view(at_ms)
    if view.banned or view.suspended:
        return 0.0
    return weight_of(reporter.reporting, view.age_days, settings)


def _target(event: Event) -> tuple[str, str] | None:
    """(kind of mark, target account) of a report or complaint event; None for other events."""
    if event.type == "report":
        return "reports", event.body.target
    if event.type == "buyer_complaint":
        return "complaints", event.body.seller
    return None


def record_report(uow: UnitOfWork, event: Event, at_ms: int, settings: ReportSettings) -> None:
    """The pipeline's fact step for `report` and `buyer_complaint`: weigh the report and keep it on the target.

    A repeat by the same reporter replaces their earlier mark (dedup per reporter and target) unless it is
    stamped earlier (events may arrive late). Reporting oneself records nothing.
    """
    found = _target(event)
    if found is None:
        return
    kind, target = found
    if target == event.actor:
        return
    weight = report_weight(uow.state(event.actor), at_ms, settings)
    state = uow.touch(target)
    marks: dict[str, ReportMark] = getattr(state, kind)
    current = marks.get(event.actor)
    if current is not None and current.at_ms > at_ms:
        return
    marks[event.actor] = ReportMark(at_ms=at_ms, weight=weight, reason=event.body.reason, event_id=event.id)
    horizon = at_ms - KEEP_DAYS * DAY_MS
    stale = [who for who, m in marks.items() if m.at_ms < horizon]
    for who in stale:
        del marks[who]
    if len(marks) > MAX_MARKS:  # keep the heaviest, then the newest
        keep = sorted(marks.items(), key=lambda kv: (kv[1].weight, kv[1].at_ms), reverse=True)[:MAX_MARKS]
        setattr(state, kind, dict(sorted(keep)))


def judge_reports(target: AccountState, reporters: dict[str, AccountState], case_id: int, upheld: bool,
                  since_ms: int, until_ms: int) -> list[str]:
    """Count a moderator's decision about `target` in the reputation of each account whose report or
    complaint of it, filed in [since_ms, until_ms], is not yet judged. `reporters` maps account -> state
    (loaded by the caller, changed in place). Returns the reporters judged."""
    judged: list[str] = []
    for kind in ("reports", "complaints"):
        marks: dict[str, ReportMark] = getattr(target, kind)
        for who, mark in sorted(marks.items()):
            if mark.judged is not None or not since_ms <= mark.at_ms <= until_ms or who not in reporters:
                continue
            mark.judged = case_id
            record = reporters[who].reporting or ReporterRecord()
            if upheld:
                record.upheld += 1
            else:
                record.overturned += 1
            reporters[who].reporting = record
            judged.append(who)
    return sorted(set(judged))


def reporters_judged_by(target: AccountState, case_id: int) -> list[str]:
    """Accounts whose report or complaint of the target was judged by the case."""
    return sorted({who for kind in ("reports", "complaints") for who, m in getattr(target, kind).items()
                   if m.judged == case_id})


def overturn_judgement(target: AccountState, reporters: dict[str, AccountState], case_id: int) -> list[str]:
    """An upheld case's measure was overturned on appeal: the reports it counted as upheld were wrong after
    all, so each judged reporter's record moves one from upheld to overturned (S14/S15: reputation follows
    the final outcome, not the first one). Returns the reporters corrected."""
    corrected = []
    for who in reporters_judged_by(target, case_id):
        record = reporters[who].reporting if who in reporters else None
        if record is None or record.upheld <= 0:
            continue
        record.upheld -= 1
        record.overturned += 1
        reporters[who].reporting = record
        corrected.append(who)
    return corrected


def pending_reporters(target: AccountState, since_ms: int, until_ms: int) -> list[str]:
    """Accounts whose unjudged report or complaint of the target was filed in [since_ms, until_ms]."""
    out = {who for kind in ("reports", "complaints") for who, m in getattr(target, kind).items()
           if m.judged is None and since_ms <= m.at_ms <= until_ms}
    return sorted(out)
