"""Findings of the batch detectors in the store: runs, findings, the accounts each names, and what follows.

`persist` writes one run in one unit of work: the findings, one row per account each names (what the
real-time signals look up), and the consequences through the enforcement code like any decision: a label
on each implicated account and a review case (source "detector") on the finding's subject, each change with
its audit entry. The review action keeps a case per rule and account from reopening within 7 days, so running
`detect` again does not flood the queue with the same group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select, update

from clearcircle.detectors.finding import Finding
from clearcircle.enforcement.actions import Request
from clearcircle.enforcement.enforce import enforce
from clearcircle.policy.rules import PackSettings
from clearcircle.store import tables as t
from clearcircle.store.repository import Store
from clearcircle.store.unit import UnitOfWork, dumps

LABEL_DAYS = 30.0
# detector -> role -> label put on the account (the pack's rules read the signals; labels are for people)
LABELS: dict[str, dict[str, str]] = {
    "lockstep": {"member": "bought_follower", "target": "follower_fraud"},
    "mlm": {"member": "mlm_participant", "organiser": "mlm_organiser"},
    "evasion": {"evader": "ban_evasion"},
    "share_burst": {"member": "induced_share_burst"},
    "friend_spam": {"member": "friend_spam"},
}
SEVERITY = {"lockstep": 3, "mlm": 4, "evasion": 4, "share_burst": 3, "friend_spam": 2}


@dataclass(frozen=True)
class Role:
    account: str
    role: str
    value: str | None = None
    at_ms: int | None = None
    score: float | None = None  # this account's own score, when not the finding's (None: the finding's)


def roles_of(f: Finding) -> list[Role]:
    """The accounts a finding names and in what role."""
    ev = f.evidence
    if f.detector == "lockstep":
        # a target's inflation counts only the bought followers still following it (unfollows, S3)
        bought, still = ev.get("bought", {}), ev.get("still_following", {})
        return [Role(a, "member") for a in f.accounts] + [
            Role(x, "target", score=f.score * still[x] / bought[x] if bought.get(x) and x in still else None)
            for x in f.targets]
    if f.detector == "mlm":
        return [Role(a, "member") for a in f.accounts] + [Role(o, "organiser") for o in ev.get("organisers", [])]
    if f.detector == "evasion":
        bans: dict[str, int] = ev.get("banned_ms", {})
        first = min(bans, key=lambda b: (bans[b], b)) if bans else None
        out = [Role(a, "evader", ev["evasion_of"][a], bans.get(ev["evasion_of"][a])) for a in f.accounts]
        out += [Role(m, "cluster", first, bans.get(first) if first else None) for m in ev.get("members", [])
                if m not in f.accounts]
        return out
    if f.detector == "share_burst":
        return [Role(a, "member") for a in f.accounts] + [Role(i, "item") for i in f.targets]
    return [Role(a, "member") for a in f.accounts]


def subject_of(f: Finding) -> str | None:
    """The account a moderator reviews for the finding: the inflated account, the organiser, the evader,
    the owner of the burst item."""
    if f.detector == "mlm":
        return (f.evidence.get("organisers") or [None])[0]
    if f.detector == "lockstep":
        return f.targets[0] if f.targets else None
    return f.accounts[0] if f.accounts else None


def finding_key(f: Finding) -> str:
    return hashlib.sha256(orjson.dumps([f.detector, f.accounts, f.targets])).hexdigest()


@dataclass(frozen=True)
class Persisted:
    run_id: int
    findings: int
    cases: int
    labels: int


def persist(store: Store, findings: Iterable[Finding], settings: PackSettings, *, engine: str, started_ms: int,
            at_ms: int, since_ms: int | None = None) -> Persisted:
    """Store one run's findings and apply their labels and review cases, atomically."""
    findings = list(findings)
    summary: dict[str, int] = {}
    for f in findings:
        summary[f.detector] = summary.get(f.detector, 0) + 1
    cases = labels = 0
    with store.unit() as uow:
        conn = uow.conn
        uow.prefetch([], {r.account for f in findings for r in roles_of(f)}, set(), 0)  # one read, not one per label
        run_id = conn.execute(insert(t.detector_runs).values(
            engine=engine, since_ms=since_ms, started_ms=started_ms, finished_ms=None, summary=dumps(summary))
        ).inserted_primary_key[0]
        for f in findings:
            fid = conn.execute(insert(t.findings).values(
                run_id=run_id, detector=f.detector, key=finding_key(f), accounts=dumps(list(f.accounts)),
                targets=dumps(list(f.targets)), score=f.score, evidence=dumps(f.evidence), found_ms=at_ms)
            ).inserted_primary_key[0]
            roles = {(r.account, r.role): r for r in roles_of(f)}.values()
            if roles:
                conn.execute(insert(t.finding_accounts), [
                    {"finding_id": fid, "account": r.account, "role": r.role, "run_id": run_id,
                     "detector": f.detector, "value": r.value, "at_ms": r.at_ms,
                     "score": f.score if r.score is None else r.score} for r in roles])
            c, n = _consequences(uow, f, fid, roles, settings, at_ms)
            cases, labels = cases + c, labels + n
        conn.execute(update(t.detector_runs).where(t.detector_runs.c.id == run_id).values(finished_ms=at_ms))
        # the run itself is audited: a new run changes what the real-time signals read even with no findings
        uow.add_audit(at_ms, "detector_run", f"run:{run_id}", dumps({"engine": engine, "findings": summary}))
    return Persisted(run_id, len(findings), cases, labels)


def _consequences(uow: UnitOfWork, f: Finding, fid: int, roles: Iterable[Role], settings: PackSettings,
                  at_ms: int) -> tuple[int, int]:
    """Labels and the review case, through the enforcement code; audit entries as the pipeline writes them."""
    rule, source = f"detector-{f.detector.replace('_', '-')}", f"finding-{fid}"
    requests = [Request(action="label", account=r.account, rule=rule, source=source, at_ms=at_ms, days=LABEL_DAYS,
                        label=LABELS[f.detector][r.role])
                for r in roles if r.role in LABELS.get(f.detector, {})]
    subject = subject_of(f)
    if subject is not None:
        requests.append(Request(action="review", account=subject, rule=rule, source=source, at_ms=at_ms))
    cases = labels = 0
    for change in enforce(requests, uow.touch, settings):
        uow.add_audit(at_ms, "state_change", change.account,
                      dumps({"event_id": source, **change.model_dump(mode="json")}))
        if change.action == "case_opened":
            cases += 1
            uow.add_case({"account": change.account, "event_id": source, "source": "detector",
                          "rules": dumps([rule]), "severity": SEVERITY.get(f.detector, 3), "status": "open",
                          "created_ms": at_ms})
        elif change.action == "label":
            labels += 1
    return cases, labels


# -- reads for the real-time path ----------------------------------------------------------------------------

def latest_run(conn: Connection) -> int | None:
    """The id of the latest finished run (None: detect never ran)."""
    return conn.execute(select(func.max(t.detector_runs.c.id)).where(t.detector_runs.c.finished_ms.is_not(None))
                        ).scalar_one_or_none()


def run_roles(conn: Connection, run_id: int) -> list[Any]:
    """Every (account, detector, role, value, at_ms, score) row of a run."""
    fa = t.finding_accounts.c
    return conn.execute(select(fa.account, fa.detector, fa.role, fa.value, fa.at_ms, fa.score)
                        .where(fa.run_id == run_id)).all()


def run_findings(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    f = t.findings.c
    rows = conn.execute(select(f.id, f.detector, f.accounts, f.targets, f.score, f.evidence)
                        .where(f.run_id == run_id).order_by(f.id)).all()
    return [{"id": r.id, "detector": r.detector, "accounts": orjson.loads(r.accounts),
             "targets": orjson.loads(r.targets), "score": r.score, "evidence": orjson.loads(r.evidence)}
            for r in rows]
