"""Merchant records: their states, the transitions compliance staff make, and the facts the pipeline records.

States (stored): ``pending`` -> ``verified`` | ``rejected`` (with reason); ``verified`` -> ``revoked`` (with
reason). ``expired`` is never stored and never polled: a verified record whose licence expiry date lies
before the day of the moment asked about *is* expired at that moment (`MerchantRecord.state_at`), so a
decision about an event stamped on any day gets the licence as it stood that day.

Decisions made here, and why:

- The licence is valid THROUGH its expiry date: Chinese licences read 有效期至 <date>, the last day on which
  the holder may trade. Dates are Chinese administrative dates, so the day of an instant is taken in
  Asia/Shanghai whatever the pack's quota time zone: 2026-03-10T23:30+08:00 is still the 10th.
- Verification and revocation take effect when staff make them (processing time), expiry by the event's
  time: staff cannot act in the past, but a late event must not be judged by a licence that lapsed after it.
- One record per account. Every application (event or staff route) replaces it: a re-application after a
  rejection or revocation opens a new pending record; so does one from a verified merchant (new licence
  details need a new check: its licence does not count until staff verify again). An application stamped
  before the record's own application (a late replay) changes nothing. History keeps every step.
- An invalid application is still an accepted event (EVENTS.md contract); its record is ``rejected``
  automatically with the broken rule as reason. A food seller must file a food licence.
- Asking for the state a record is already in (verify a verified record with the same expiry, reject a
  rejected one, revoke a revoked one) is answered with the record unchanged, so staff tools can retry; any
  other transition out of its state is a `TransitionError` (HTTP 409) naming the state and its reason.
- The account's class (AccountState.account_class) follows the record at each of the account's events:
  ``merchant`` while verified and unexpired at the event's time, back to its registered type otherwise (a
  class someone else set, such as verified_brand, is left alone). So does its industry (AccountState.industry,
  for the industry tiers of quotas): the first category of a verified, unexpired record, else none. Both are
  written by the pipeline only, so an API call never races the pipeline's own write of the same account state.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, select

from clearcircle.merchants.codes import CodeError, validate_credit_code, validate_food_licence
from clearcircle.store import tables as t
from clearcircle.store.driver import Driver

if TYPE_CHECKING:
    from clearcircle.events.schemas import Event
    from clearcircle.store.unit import UnitOfWork

LICENCE_ZONE = ZoneInfo("Asia/Shanghai")
STORED_STATES = ("pending", "verified", "rejected", "revoked")
STATES = (*STORED_STATES, "expired")
FOOD_CATEGORIES = frozenset({"food"})  # categories that need a food business licence (farm_produce does not)
MERCHANT_CLASS = "merchant"
_CHUNK = 500


class TransitionError(ValueError):
    """The record's state does not allow the step (HTTP 409)."""


class NotFound(KeyError):
    """No merchant record for the account (HTTP 404)."""


@dataclass(frozen=True)
class Violation:
    """One broken rule of an application: the field, the rule id and what is wrong."""

    field: str
    rule: str
    message: str

    def reason(self) -> str:
        return f"{self.field}: {self.rule}: {self.message}"


def local_day(at_ms: int) -> date:
    """The Chinese calendar day of an instant (licence dates are read in Asia/Shanghai)."""
    return datetime.fromtimestamp(at_ms / 1000, LICENCE_ZONE).date()


@dataclass(frozen=True)
class MerchantRecord:
    account: str
    company_name: str
    credit_code: str
    food_licence: str | None
    categories: tuple[str, ...]
    status: str
    reason: str | None
    licence_expires: date | None
    application_id: str
    applied_ms: int
    updated_ms: int

    def expired_at(self, at_ms: int) -> bool:
        """The licence ran out before the day of `at_ms` (valid through its expiry date)."""
        return self.licence_expires is not None and local_day(at_ms) > self.licence_expires

    @property
    def industry(self) -> str | None:
        """The industry for quota tiers (S8): the first category the merchant declared, its main trade."""
        return self.categories[0] if self.categories else None

    def state_at(self, at_ms: int) -> str:
        """The stored state, or ``expired`` for a verified record past its licence expiry date."""
        if self.status == "verified" and self.expired_at(at_ms):
            return "expired"
        return self.status

    def food_licensed_at(self, at_ms: int) -> bool:
        """Verified, holding a food licence, and that licence not expired on the day of `at_ms`."""
        return (self.status == "verified" and self.food_licence is not None and self.licence_expires is not None
                and not self.expired_at(at_ms))

    def to_dict(self, at_ms: int) -> dict[str, Any]:
        return {"account": self.account, "state": self.state_at(at_ms), "status": self.status,
                "reason": self.reason, "company_name": self.company_name, "credit_code": self.credit_code,
                "food_licence": self.food_licence, "categories": list(self.categories),
                "licence_expires": self.licence_expires.isoformat() if self.licence_expires else None,
                "food_licensed": self.food_licensed_at(at_ms), "application_id": self.application_id,
                "applied_ms": self.applied_ms, "updated_ms": self.updated_ms}

    @classmethod
    def from_row(cls, row: Any) -> MerchantRecord:
        return cls(row.account, row.company_name, row.credit_code, row.food_licence,
                   tuple(orjson.loads(row.categories)), row.status, row.reason,
                   date.fromisoformat(row.licence_expires) if row.licence_expires else None,
                   row.application_id, row.applied_ms, row.updated_ms)

    def row(self) -> dict[str, Any]:
        return {"account": self.account, "company_name": self.company_name, "credit_code": self.credit_code,
                "food_licence": self.food_licence, "categories": orjson.dumps(list(self.categories)).decode(),
                "status": self.status, "reason": self.reason,
                "licence_expires": self.licence_expires.isoformat() if self.licence_expires else None,
                "application_id": self.application_id, "applied_ms": self.applied_ms,
                "updated_ms": self.updated_ms}


def validate_application(company_name: str, credit_code: str, food_licence: str | None,
                         categories: Iterable[str]) -> list[Violation]:
    """Every broken rule of an application (empty: valid). Codes are checked by clearcircle.merchants.codes."""
    problems: list[Violation] = []
    if not company_name.strip():
        problems.append(Violation("company_name", "required", "the full registered company name is required"))
    try:
        validate_credit_code(credit_code)
    except CodeError as exc:
        problems.append(Violation("credit_code", exc.rule, exc.message))
    if food_licence:
        try:
            validate_food_licence(food_licence)
        except CodeError as exc:
            problems.append(Violation("food_licence", exc.rule, exc.message))
    elif FOOD_CATEGORIES & set(categories):
        problems.append(Violation("food_licence", "required", "an account selling food (category 'food') "
                                                              "must file its food business licence number"))
    return problems


# -- reads and writes on a connection (the caller's transaction) --------------------------------------------------


_COLUMNS = [c.name for c in t.merchants.columns]
_ROW = namedtuple("_ROW", _COLUMNS)  # type: ignore[misc]  # from_row reads columns by name


def load(conn: Connection, accounts: Iterable[str]) -> dict[str, MerchantRecord]:
    """Records of the accounts that have one. Read on every submit, so through the driver (a composed
    SQLAlchemy select cost more than the look-up itself)."""
    wanted = sorted(set(accounts))
    out: dict[str, MerchantRecord] = {}
    driver = Driver(conn)
    for i in range(0, len(wanted), _CHUNK):
        where, params = driver.among("account", wanted[i : i + _CHUNK])
        for row in driver.rows(f"SELECT {', '.join(_COLUMNS)} FROM merchants WHERE {where}", params):
            record = MerchantRecord.from_row(_ROW(*row))
            out[record.account] = record
    return out


def get(conn: Connection, account: str, lock: bool = False) -> MerchantRecord | None:
    query = select(t.merchants).where(t.merchants.c.account == account)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else MerchantRecord.from_row(row)


def save(conn: Connection, record: MerchantRecord, existed: bool) -> None:
    row = record.row()
    if existed:
        conn.execute(t.merchants.update().where(t.merchants.c.account == record.account).values(**row))
    else:
        conn.execute(t.merchants.insert().values(**row))


def add_history(conn: Connection, record: MerchantRecord, step: str, at_ms: int, by: str,
                detail: dict[str, Any]) -> None:
    conn.execute(t.merchant_history.insert().values(
        account=record.account, at_ms=at_ms, step=step, status=record.status, by=by,
        detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode()))


def history(conn: Connection, account: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(t.merchant_history).where(t.merchant_history.c.account == account)
                        .order_by(t.merchant_history.c.seq)).all()
    return [{"seq": r.seq, "at_ms": r.at_ms, "step": r.step, "status": r.status, "by": r.by,
             **orjson.loads(r.detail)} for r in rows]


# -- steps ----------------------------------------------------------------------------------------------------------


@dataclass
class Step:
    """What one step did: the record after it, and the audit/history entry to write (None: nothing changed)."""

    record: MerchantRecord
    step: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.step is not None


def application(current: MerchantRecord | None, account: str, company_name: str, credit_code: str,
                food_licence: str | None, categories: Iterable[str], application_id: str,
                at_ms: int) -> Step:
    """The record an application opens: pending if valid, rejected naming the first broken rule if not."""
    if current is not None and at_ms < current.applied_ms:
        return Step(current, None)  # stamped before the application the record already holds
    categories = tuple(dict.fromkeys(categories))
    problems = validate_application(company_name, credit_code, food_licence, categories)
    status, reason = ("rejected", "; ".join(p.reason() for p in problems)) if problems else ("pending", None)
    record = MerchantRecord(account, company_name, credit_code, food_licence or None, categories, status,
                            reason, None, application_id, at_ms, at_ms)
    detail = {"application_id": application_id, "company_name": company_name, "credit_code": credit_code,
              "food_licence": food_licence, "categories": list(categories), "reason": reason,
              "replaces": current.status if current is not None else None}
    return Step(record, "applied" if status == "pending" else "rejected_automatically", detail)


def _refuse(record: MerchantRecord, what: str, hint: str) -> TransitionError:
    why = f" (reason: {record.reason})" if record.reason else ""
    return TransitionError(f"cannot {what} the merchant record of {record.account!r}: it is {record.status}"
                           f"{why}; {hint}")


def verify(record: MerchantRecord, licence_expires: date | None, at_ms: int) -> Step:
    """pending -> verified (or a verified record's expiry renewed). A record with a food licence needs its
    expiry date, which must not already be past."""
    if record.status in ("rejected", "revoked"):
        raise _refuse(record, "verify", "the account must file a new application")
    if record.food_licence is not None and licence_expires is None:
        raise ValueError("licence_expires: required to verify a record with a food business licence")
    if licence_expires is not None and licence_expires < local_day(at_ms):
        raise ValueError(f"licence_expires: {licence_expires.isoformat()} is already past "
                         f"(today in Asia/Shanghai is {local_day(at_ms).isoformat()})")
    if record.status == "verified" and record.licence_expires == licence_expires:
        return Step(record, None)
    step = "verified" if record.status == "pending" else "renewed"
    after = replace(record, status="verified", reason=None, licence_expires=licence_expires, updated_ms=at_ms)
    return Step(after, step, {"licence_expires": licence_expires.isoformat() if licence_expires else None,
                              "previous_expiry": record.licence_expires.isoformat()
                              if record.licence_expires else None})


def reject(record: MerchantRecord, reason: str, at_ms: int) -> Step:
    """pending -> rejected with a reason."""
    if record.status == "rejected":
        return Step(record, None)
    if record.status != "pending":
        hint = "revoke a verified record instead" if record.status == "verified" else "nothing is pending"
        raise _refuse(record, "reject", hint)
    return Step(replace(record, status="rejected", reason=reason, updated_ms=at_ms), "rejected", {"reason": reason})


def revoke(record: MerchantRecord, reason: str, at_ms: int) -> Step:
    """verified (expired or not) -> revoked with a reason."""
    if record.status == "revoked":
        return Step(record, None)
    if record.status != "verified":
        hint = "reject a pending record instead" if record.status == "pending" else "only a verified record " \
                                                                                   "can be revoked"
        raise _refuse(record, "revoke", hint)
    return Step(replace(record, status="revoked", reason=reason, updated_ms=at_ms), "revoked", {"reason": reason})


# -- the pipeline's side ----------------------------------------------------------------------------------------------


class MerchantBook:
    """The batch's view of the registry: records of the batch's actors, loaded in the batch's transaction
    (one query a batch, so a verification by staff counts from the next batch on, without a restart), plus
    what the batch's own applications wrote."""

    def __init__(self) -> None:
        self.records: dict[str, MerchantRecord] = {}
        self._absent: set[str] = set()  # accounts known to have no record

    def load(self, conn: Connection, accounts: Iterable[str], keep: bool = False) -> None:
        """`keep`: no other writer since the last load (the unit's working set is reused), so the records
        already read are still current and only accounts not seen yet are read."""
        wanted = set(accounts)
        if keep:
            records, absent = self.records, self._absent  # per account: a union would copy both each batch
            wanted = {a for a in wanted if a not in records and a not in absent}
        else:
            self.records, self._absent = {}, set()
        if wanted:
            found = load(conn, wanted)
            self.records.update(found)
            self._absent |= wanted - found.keys()

    def get(self, account: str) -> MerchantRecord | None:
        return self.records.get(account)

    def forget(self, accounts: Iterable[str]) -> None:
        """Records another worker may have changed: read again on next need."""
        for account in accounts:
            self.records.pop(account, None)
            self._absent.discard(account)

    def remember(self, record: MerchantRecord) -> None:
        """A record the batch itself wrote."""
        self.records[record.account] = record
        self._absent.discard(record.account)


def record_facts(uow: UnitOfWork, event: Event, at_ms: int, book: MerchantBook) -> None:
    """The pipeline's merchant facts for one event, in the batch's transaction: an application opens (or
    replaces) the actor's record, audited like every state change; and the actor's class follows its record."""
    if event.type == "merchant_application":
        body = event.body
        current = get(uow.conn, event.actor, lock=True)  # not the batch's copy: staff may have acted since
        step = application(current, event.actor, body.company_name, body.credit_code, body.food_licence,
                           body.categories, event.id, at_ms)
        if step.changed:
            save(uow.conn, step.record, current is not None)
            add_history(uow.conn, step.record, step.step, at_ms, "event", step.detail)
            uow.touch(event.actor)  # in the unit log: other workers' merchant books drop this record
            uow.add_audit(at_ms, f"merchant_{step.step}", event.actor,
                          _dumps({"event_id": event.id, "status": step.record.status, **step.detail}))
            book.remember(step.record)
    record = book.get(event.actor)
    if record is None:
        return
    state = uow.state(event.actor)
    previous, previous_industry = state.account_class, state.industry
    merchant_state = record.state_at(at_ms)
    verified = merchant_state == "verified"
    wanted = MERCHANT_CLASS if verified else None
    if previous == wanted or (wanted is not None and previous is not None) or \
            (wanted is None and previous != MERCHANT_CLASS):
        wanted = previous  # already right, or a class set by someone else (verified_brand): left alone
    industry = record.industry if verified else None
    if wanted == previous and industry == previous_industry:
        return
    changed = uow.touch(event.actor)
    changed.account_class, changed.industry = wanted, industry
    uow.add_audit(at_ms, "state_change", event.actor, _dumps({
        "event_id": event.id, "account": event.actor, "action": "account_class", "rule": "merchant-registry",
        "detail": {"from": previous, "to": wanted, "industry_from": previous_industry, "industry_to": industry,
                   "merchant_state": merchant_state}}))


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
