"""`clearcircle merchants ...`: the merchant registry (S10) from the command line.

`check-code` needs no database: it tells a compliance officer at once whether a credit code or a food licence
number is well formed, and which rule it breaks (exit 0 valid, 1 invalid). The other commands act on the store
like the API's compliance routes, with an audit entry per step (by `cli:<user>`). Exit codes as everywhere:
1 a check failed or the step is not allowed, 2 bad input or an unusable store.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from clearcircle.cli.common import DbOpt, actor, console, err, fail, open_store, when
from clearcircle.merchants import registry as merchant_registry
from clearcircle.merchants.codes import CodeError, check_code
from clearcircle.store.repository import now_ms

merchants_app = typer.Typer(help="The merchant registry (S10): records, licences, code checks.", no_args_is_help=True)


@merchants_app.command("check-code")
def check_code_cmd(code: Annotated[str, typer.Argument(help="an 18-character credit code or a JY licence")]) -> None:
    """Validate one unified social credit code (GB 32100) or food business licence number (JY + 14 digits).

    Exit 0 when valid, 1 naming the rule broken.
    """
    try:
        checked = check_code(code)
    except CodeError as exc:
        kind = "food licence number" if code.startswith("JY") else "credit code"
        err.print(Text.assemble(("invalid", "red"), f" {kind}: {exc.rule}: {exc.message}"), highlight=False)
        raise typer.Exit(1) from None
    kind = "food licence number" if checked.kind == "food_licence" else "unified social credit code"
    console.print(Text.assemble(("valid", "green"), f" {kind} {checked.code}"), highlight=False)
    for key, value in checked.parts.items():
        console.print(Text(f"  {key}: {value}"), highlight=False)
    if checked.note:
        console.print(Text(f"  note: {checked.note}"), highlight=False)


@merchants_app.command("list")
def list_cmd(state: Annotated[str | None, typer.Option(help="pending/verified/expired/rejected/revoked")] = None,
             db: DbOpt = None) -> None:
    """Records, with each one's state now (expired is computed from the licence expiry date)."""
    if state is not None and state not in merchant_registry.STATES:
        raise fail(f"unknown state {state!r}; states: {', '.join(merchant_registry.STATES)}")
    store = open_store(db)
    try:
        records = store.merchant_list(state, limit=100_000)
    finally:
        store.close()
    at = now_ms()
    table = Table(title=f"{len(records)} merchant record(s)")
    for col in ("account", "state", "company", "credit code", "food licence", "expires", "reason"):
        table.add_column(col, no_wrap=col in ("account", "state", "credit code", "food licence", "expires"))
    for r in records:
        table.add_row(Text(r.account), r.state_at(at), Text(r.company_name), Text(r.credit_code),
                      Text(r.food_licence or ""), r.licence_expires.isoformat() if r.licence_expires else "",
                      Text(r.reason or ""))
    console.print(table)


@merchants_app.command("show")
def show_cmd(account: str, db: DbOpt = None) -> None:
    """One record and its history. Exit 1 if the account has none."""
    store = open_store(db)
    try:
        record = store.merchant(account)
        steps = store.merchant_history(account) if record else []
    finally:
        store.close()
    if record is None:
        raise fail(f"no merchant record for {account!r}", 1)
    for key, value in record.to_dict(now_ms()).items():
        console.print(Text(f"{key}: {value}"), highlight=False)
    table = Table(title="history")
    for col in ("when", "step", "status", "by", "detail"):
        table.add_column(col)
    for h in steps:
        detail = {k: v for k, v in h.items() if k not in ("seq", "at_ms", "step", "status", "by") and v is not None}
        table.add_row(when(h["at_ms"]), h["step"], h["status"], Text(h["by"]), Text(str(detail)))
    console.print(table)


def _step(account: str, action: str, db: str | None, **kwargs: object) -> None:
    store = open_store(db)
    try:
        step = store.merchant_step(account, action, actor(), **kwargs)
    except merchant_registry.NotFound:
        raise fail(f"no merchant record for {account!r}", 1) from None
    except merchant_registry.TransitionError as exc:
        raise fail(str(exc), 1) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    record = step.record
    what = f"{action}: {account} is {record.state_at(now_ms())}" + ("" if step.changed else " (unchanged)")
    console.print(Text.assemble(("✓", "green"), " ", what), highlight=False)


@merchants_app.command("verify")
def verify_cmd(account: str,
               expires: Annotated[str | None, typer.Option(help="licence expiry date YYYY-MM-DD (Asia/Shanghai; "
                                                                "valid through that day)")] = None,
               db: DbOpt = None) -> None:
    """pending -> verified (or renew a verified record's expiry)."""
    try:
        expiry = date.fromisoformat(expires) if expires else None
    except ValueError:
        raise fail(f"--expires {expires!r} is not a date YYYY-MM-DD") from None
    _step(account, "verify", db, licence_expires=expiry)


@merchants_app.command("reject")
def reject_cmd(account: str, reason: Annotated[str, typer.Option(help="why, for the record and the audit")],
               db: DbOpt = None) -> None:
    """pending -> rejected."""
    _step(account, "reject", db, reason=reason)


@merchants_app.command("revoke")
def revoke_cmd(account: str, reason: Annotated[str, typer.Option(help="why, for the record and the audit")],
               db: DbOpt = None) -> None:
    """verified -> revoked."""
    _step(account, "revoke", db, reason=reason)
