"""`clearcircle queue ...`, `appeals ...`, `rules-stats`, `backtest` and `report`: people in the loop (issue 6)
from the command line, over clearcircle.review (the same steps as the API's, audited as `cli:<user>`).

Exit codes as everywhere: 0 done, 1 the step is refused by the stored state (no such case, decided another
way, claimed by someone else), 2 bad input or an unusable store or pack.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table
from rich.text import Text

from clearcircle.cli.common import DbOpt, PackOpt, actor, console, fail, say, service_for, when
from clearcircle.policy.pack import PackError, load_pack
from clearcircle.review import appeals as appeal_steps
from clearcircle.review import queue
from clearcircle.review.errors import Conflict, NotFound, ReviewError
from clearcircle.service import Service

queue_app = typer.Typer(help="The review queue: cases by priority, claims, decisions.", no_args_is_help=True)
appeals_app = typer.Typer(help="Appeals (S15): file, list, decide; an overturn reverses the action.",
                          no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _step(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except (NotFound, Conflict) as exc:
        raise fail(str(exc), 1) from None
    except ReviewError as exc:
        raise fail(str(exc)) from None


def _json(value: Any) -> None:
    console.print_json(orjson.dumps(value, default=str).decode())


def _hours(ms: int) -> str:
    return f"{ms / 3_600_000:.1f} h"


@queue_app.command("list")
def queue_list(
    status: Annotated[str, typer.Option(help="comma-separated: open, escalated, upheld, overturned")]
    = "open,escalated",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    db: DbOpt = None, pack: PackOpt = None, as_json: JsonOpt = False,
) -> None:
    """Cases, highest priority first (severity x reach x confidence)."""
    service = service_for(db, pack)
    try:
        statuses = tuple(s for s in status.split(",") if s)
        if not statuses or set(statuses) - {"open", "escalated", "upheld", "overturned"}:
            raise fail(f"--status: one or more of open, escalated, upheld, overturned (got {status!r})")
        cases = queue.list_cases(service.store, service.pack.settings, status=statuses, limit=limit)
        if as_json:
            _json([c.to_dict() for c in cases])
            return
        table = Table("id", "priority", "sev", "reach", "conf", "account", "source", "rules", "status", "claimed",
                      "age", "SLA")
        for c in cases:
            table.add_row(str(c.id), f"{c.priority:.2f}", str(c.severity), f"{c.reach:.2f}", f"{c.confidence:.2f}",
                          Text(c.account), c.source, Text(", ".join(c.rules)), c.status, Text(c.claimed_by or ""),
                          _hours(c.age_ms), Text("overdue", "red") if c.overdue else _hours(c.sla_ms))
        console.print(table)
        if not cases:
            console.print("no cases")
    finally:
        service.close()


@queue_app.command("show")
def queue_show(case_id: int, db: DbOpt = None, pack: PackOpt = None) -> None:
    """Everything about one case (JSON): the event, its decision and evidence, the account, reports, labels."""
    service = service_for(db, pack)
    try:
        _json(_step(queue.case_detail, service.store, service.pack.settings, case_id))
    finally:
        service.close()


@queue_app.command("claim")
def queue_claim(case_id: int, moderator: Annotated[str | None, typer.Option(help="default: cli:<user>")] = None,
                db: DbOpt = None, pack: PackOpt = None) -> None:
    """Take a case (refused while another moderator's claim holds)."""
    service = service_for(db, pack)
    try:
        case = _step(queue.claim_case, service, case_id, moderator or actor())
        say(("claimed", "green"), f"case {case.id} by {case.claimed_by}", console)
    finally:
        service.close()


@queue_app.command("assign")
def queue_assign(case_id: int, moderator: Annotated[str, typer.Argument(help="who gets the case")],
                 db: DbOpt = None, pack: PackOpt = None) -> None:
    """Give a case to a moderator, whoever held it."""
    service = service_for(db, pack)
    try:
        case = _step(queue.assign_case, service, case_id, moderator, actor())
        say(("assigned", "green"), f"case {case.id} to {case.claimed_by}", console)
    finally:
        service.close()


@queue_app.command("decide")
def queue_decide(case_id: int,
                 decision: Annotated[str, typer.Argument(help="uphold, overturn or escalate")],
                 reason: Annotated[str, typer.Option("--reason", help="why (required)")],
                 action: Annotated[str | None, typer.Option(help="with uphold: label, limit_reach, remove, "
                                                                 "restrict, suspend or ban")] = None,
                 days: Annotated[int | None, typer.Option(min=1, max=3650, help="how long the action lasts")] = None,
                 db: DbOpt = None, pack: PackOpt = None) -> None:
    """Decide a case; overturn reverses what its event did to the account; uphold may take an action."""
    service = service_for(db, pack)
    try:
        result = _step(lambda: queue.decide_case(service, case_id, decision, reason, actor(), action=action,
                                                 days=days))
        if "action" in result:
            say(("action", "green"), f"{result['action']['event_id']}: {result['action']['verdict']}", console)
        if not result["changed"]:
            say(("unchanged", "yellow"), f"case {case_id} is already {result['status']}", console)
            return
        say(("decided", "green"), f"case {case_id}: {result['status']}, {result['labels']} labels, "
            f"{len(result['reporters'])} reporters judged, {len(result['changes'])} reversals", console)
    finally:
        service.close()


@appeals_app.command("file")
def appeals_file(account: str, event_id: str,
                 statement: Annotated[str, typer.Option("--statement", help="the owner's words (required)")],
                 db: DbOpt = None, pack: PackOpt = None) -> None:
    """File an account owner's appeal of what one event did to their account."""
    service = service_for(db, pack)
    try:
        appeal, created = _step(appeal_steps.file_appeal, service.store, account, event_id, statement, actor())
        say(("filed" if created else "already open", "green" if created else "yellow"),
            f"appeal {appeal.id}: {account} against {event_id}", console)
    finally:
        service.close()


@appeals_app.command("list")
def appeals_list(status: Annotated[str, typer.Option(help="open, upheld, overturned or all")] = "open",
                 db: DbOpt = None, pack: PackOpt = None, as_json: JsonOpt = False) -> None:
    """Appeals, oldest first."""
    service = service_for(db, pack)
    try:
        found = _step(appeal_steps.list_appeals, service.store, None if status == "all" else status)
        if as_json:
            _json([a.to_dict() for a in found])
            return
        table = Table("id", "account", "event", "filed", "status", "decided by", "reason")
        for a in found:
            table.add_row(str(a.id), Text(a.account), Text(a.event_id), when(a.filed_ms), a.status,
                          Text(a.decided_by or ""), Text(a.reason or ""))
        console.print(table)
    finally:
        service.close()


@appeals_app.command("decide")
def appeals_decide(appeal_id: int, decision: Annotated[str, typer.Argument(help="uphold or overturn")],
                   reason: Annotated[str, typer.Option("--reason", help="why (required)")],
                   db: DbOpt = None, pack: PackOpt = None) -> None:
    """Uphold or overturn an appeal; an overturn reverses the action completely."""
    service = service_for(db, pack)
    try:
        appeal, changed = _step(appeal_steps.decide_appeal, service, appeal_id, decision, reason, actor())
        reversed_ = [c["detail"]["changed"] for c in appeal.changes]
        say(("decided" if changed else "unchanged", "green" if changed else "yellow"),
            f"appeal {appeal.id}: {appeal.status}" + (f", reversed {reversed_}" if reversed_ else ""), console)
    finally:
        service.close()


def _since(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--since: {value!r} is not an ISO date or RFC 3339 time") from None
    if at.tzinfo is None:
        raise fail("--since: give a time-zone offset (e.g. 2026-03-01T00:00:00+08:00)")
    return int(at.timestamp() * 1000)


def backtest_cmd(
    pack: Annotated[Path, typer.Option("--pack", help="the changed policy pack folder")],
    since: Annotated[str | None, typer.Option(help="RFC 3339: compare events from then on (default: all)")] = None,
    rule: Annotated[str | None, typer.Option(help="change only this rule of the live pack")] = None,
    live: Annotated[Path | None, typer.Option("--live", help="the live pack (default: $CLEARCIRCLE_PACK or "
                                                             "built-in)")] = None,
    db: DbOpt = None, as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(min=0, max=100_000, help="changed events to list")] = 50,
) -> None:
    """Run a changed pack (or one rule of it) over the stored events without acting, and show the difference."""
    from clearcircle.review.backtest import backtest

    since_ms = _since(since)
    try:
        candidate = load_pack(pack)
    except PackError as exc:
        raise fail(f"invalid policy pack:\n{exc}") from None
    service: Service = service_for(db, live)
    try:
        report = _step(backtest, service.store, candidate, since_ms, rule, service.pack, limit)
    finally:
        service.close()
    if as_json:
        _json(report.to_dict())
        return
    console.print(f"{report.events:,} events compared ({report.replayed:,} replayed); verdict changed for "
                  f"{report.changed_total:,}")
    table = Table("rule", "mode old→new", "hits old", "hits new", "shadow old", "shadow new", "upheld", "overturned",
                  "precision")
    for r in report.rules:
        if not (r.old_hits or r.new_hits or r.old_shadow_hits or r.new_shadow_hits or r.old_mode != r.new_mode):
            continue
        table.add_row(Text(r.rule), f"{r.old_mode or '-'}→{r.new_mode or '-'}", str(r.old_hits), str(r.new_hits),
                      str(r.old_shadow_hits), str(r.new_shadow_hits), str(r.upheld), str(r.overturned),
                      "n/a" if r.precision is None else f"{r.precision:.0%}")
    console.print(table)
    if report.changed:
        changes = Table("event", "type", "actor", "old", "new", "rules old", "rules new")
        for c in report.changed:
            changes.add_row(Text(c.event_id), c.type, Text(c.actor), c.old_verdict, c.new_verdict,
                            Text(", ".join(c.old_rules)), Text(", ".join(c.new_rules)))
        console.print(changes)


def rules_stats_cmd(db: DbOpt = None, pack: PackOpt = None, since: Annotated[str | None, typer.Option()] = None,
                    as_json: JsonOpt = False) -> None:
    """Every rule's live figures (shadow rules included): hits, accounts, precision from moderator labels."""
    from clearcircle.review.stats import rule_stats

    since_ms = _since(since)
    service = service_for(db, pack)
    try:
        stats = rule_stats(service.store, service.pack, since_ms)
    finally:
        service.close()
    if as_json:
        _json([s.to_dict() for s in stats])
        return
    table = Table("rule", "mode", "category", "hits", "shadow hits", "accounts", "upheld", "overturned", "precision")
    for s in stats:
        table.add_row(Text(s.rule), s.mode, s.category, str(s.hits), str(s.shadow_hits), str(s.accounts),
                      str(s.upheld), str(s.overturned), "n/a" if s.precision is None else f"{s.precision:.0%}")
    console.print(table)


def report_cmd(
    month: Annotated[str, typer.Option("--month", help="YYYY-MM (in the pack's time zone)")],
    out: Annotated[Path | None, typer.Option("--out", help="folder for CSV, PNG and HTML (default: "
                                                           "transparency-YYYY-MM)")] = None,
    db: DbOpt = None, pack: PackOpt = None,
) -> None:
    """Transparency report (S11) for a month: CSV, PNG charts and an HTML page."""
    from clearcircle.review.transparency import transparency_report

    service = service_for(db, pack)
    try:
        report = _step(transparency_report, service.store, service.pack, month)
    finally:
        service.close()
    folder = out or Path(f"transparency-{month}")
    try:
        written = report.write(folder)
    except OSError as exc:
        raise fail(f"cannot write the report to {folder}: {exc}") from None
    by_kind = report.by(1)
    console.print(f"{month}: {sum(report.actions.values())} actions (public {by_kind.get('public', 0)}, personal "
                  f"{by_kind.get('personal', 0)}); accounts banned: public {report.accounts.get(('public', 'ban'), 0)}"
                  f", personal {report.accounts.get(('personal', 'ban'), 0)}; appeals {report.appeals['filed']}, "
                  f"reversals {report.reversals}", soft_wrap=True)
    for path in written:
        console.print(Text(f"  {path}"), soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the queue and appeals groups and the backtest, rules-stats and report commands to the CLI."""
    app.add_typer(queue_app, name="queue")
    app.add_typer(appeals_app, name="appeals")
    app.command("backtest")(backtest_cmd)
    app.command("rules-stats")(rules_stats_cmd)
    app.command("report")(report_cmd)
