"""The audit chain: intact after real traffic; every kind of tampering is detected and located."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from clearcircle.audit.chain import Finding
from clearcircle.cli.main import app
from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.service import Service, open_service

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
COUNTERFEIT = "高仿名牌包包，原单品质，微信下单包邮"


def ev(event_id: str, type_: str, actor: str, body: dict[str, Any], day: int) -> Any:
    at = (START + timedelta(days=day)).isoformat()
    return parse_event({"id": event_id, "type": type_, "occurred_at": at, "actor": actor, "body": body})


@pytest.fixture
def svc(db_url: str, tmp_path: Path) -> Iterator[Service]:
    service = open_service(Settings(db_url=db_url, key_file=tmp_path / "hash.key"))
    try:
        events = [ev(f"p-{n}", "post_created", "seller", {"surface": "moments", "text": COUNTERFEIT}, n)
                  for n in range(1, 5)]
        events += [
            ev("r-1", "account_registered", "fresh", {"account_type": "personal", "device_id": "d-1"}, 5),
            ev("l-1", "like", "fresh", {"item": "p-1"}, 5),
            ev("m-1", "moderator_action", "moderator", {"target": "spammer", "action": "ban", "reason": "x"}, 6),
            ev("m-2", "moderator_action", "moderator", {"target": "other", "action": "label", "reason": "x"}, 6),
        ]
        service.pipeline.submit(events[:3])
        service.pipeline.submit(events[3:])
        service.store.create_key("integrator", "backend")  # an admin row in the same chain
        yield service
    finally:
        service.close()


def sql(service: Service, statement: str, **params: Any) -> Any:
    with service.store.engine.begin() as conn:
        return conn.execute(sa.text(statement), params)


def rows(service: Service) -> list[Any]:
    with service.store.engine.connect() as conn:
        return conn.execute(sa.text("select seq, kind, subject, payload from audit order by seq")).all()


def drop_triggers(service: Service, backend: str) -> None:
    """What an attacker with database access does first: remove the append-only guard."""
    if backend == "sqlite":
        sql(service, "DROP TRIGGER audit_no_update")
        sql(service, "DROP TRIGGER audit_no_delete")
    else:
        sql(service, "DROP TRIGGER audit_append_only ON audit")


def a_middle_row(service: Service, kind: str) -> int:
    """The seq of a row of this kind away from both ends of the chain."""
    all_rows = rows(service)
    candidates = [r.seq for r in all_rows[2:-2] if r.kind == kind]
    assert candidates, f"no {kind} row in the middle of {[r.kind for r in all_rows]}"
    return candidates[len(candidates) // 2]


def decision_seq(service: Service, event_id: str) -> int:
    return sql(service, "select seq from audit where kind = 'decision' and subject = :s", s=event_id).scalar_one()


def verify(service: Service) -> list[Finding]:
    checked, findings = service.store.verify_audit()
    assert checked > 0
    return findings


# -- intact ------------------------------------------------------------------------------------------------

def test_intact_log_has_no_findings(svc):
    all_rows = rows(svc)
    kinds = {r.kind for r in all_rows}
    assert {"decision", "state_change", "api_key_created"} <= kinds
    assert [r.seq for r in all_rows] == list(range(1, len(all_rows) + 1))
    checked, findings = svc.store.verify_audit()
    assert findings == []
    assert checked == len(all_rows)
    assert svc.store.audit_head()[0] == len(all_rows)
    # every decision is sealed by exactly one audit row
    decisions = sql(svc, "select event_id from decisions order by event_id").scalars().all()
    assert sorted(r.subject for r in all_rows if r.kind == "decision") == decisions


def test_later_traffic_keeps_the_chain_intact(svc):
    svc.pipeline.submit([ev("p-9", "post_created", "seller", {"surface": "moments", "text": COUNTERFEIT}, 9)])
    svc.store.audit("pack_loaded", "operating-norms", {"version": "v"})
    assert verify(svc) == []


def test_audit_rows_cannot_be_updated_or_deleted(svc):
    seq = a_middle_row(svc, "state_change")
    with pytest.raises(DBAPIError, match="append-only"):
        sql(svc, "update audit set payload = '{}' where seq = :s", s=seq)
    with pytest.raises(DBAPIError, match="append-only"):
        sql(svc, "delete from audit where seq = :s", s=seq)
    assert verify(svc) == []


# -- tampering with the chain ------------------------------------------------------------------------------

def test_edited_payload_is_found_at_its_row(svc, db_backend):
    seq = a_middle_row(svc, "state_change")
    drop_triggers(svc, db_backend)
    payload = json.loads(sql(svc, "select payload from audit where seq = :s", s=seq).scalar_one())
    payload["action"] = "label"
    sql(svc, "update audit set payload = :p where seq = :s", p=json.dumps(payload), s=seq)
    findings = verify(svc)
    assert [(f.seq, f.problem.split(":")[0]) for f in findings] == [(seq, "edited")]
    assert f"row {seq}: edited" in str(findings[0])


def test_edited_decision_row_is_found_at_its_row(svc, db_backend):
    seq = decision_seq(svc, "p-2")
    drop_triggers(svc, db_backend)
    payload = json.loads(sql(svc, "select payload from audit where seq = :s", s=seq).scalar_one())
    payload["verdict"] = "allow"
    sql(svc, "update audit set payload = :p where seq = :s", p=json.dumps(payload), s=seq)
    findings = verify(svc)
    assert findings and {f.seq for f in findings} == {seq}
    assert any(f.problem.startswith("edited") for f in findings)


def test_payload_edited_into_broken_json_is_reported_not_crashed(svc, db_backend):
    seq = decision_seq(svc, "p-2")
    drop_triggers(svc, db_backend)
    sql(svc, "update audit set payload = :p where seq = :s", p='{"verdict": "allow", "sha256": ', s=seq)
    findings = verify(svc)  # must name the row, not raise JSONDecodeError
    assert any(f.seq == seq and f.problem.startswith("edited") for f in findings)


def test_edited_row_with_recomputed_hash_breaks_the_link(svc, db_backend):
    from clearcircle.audit.chain import row_hash

    seq = a_middle_row(svc, "state_change")
    drop_triggers(svc, db_backend)
    r = sql(svc, "select at_ms, kind, subject, prev_hash from audit where seq = :s", s=seq).one()
    forged = '{"forged": true}'
    sql(svc, "update audit set payload = :p, hash = :h where seq = :s", p=forged, s=seq,
        h=row_hash(r.prev_hash, r.at_ms, r.kind, r.subject, forged))
    findings = verify(svc)
    assert findings, "a re-hashed forgery still breaks the next row's link"
    assert findings[0].seq == seq + 1


def test_deleted_middle_row_names_the_missing_seq(svc, db_backend):
    seq = a_middle_row(svc, "state_change")
    drop_triggers(svc, db_backend)
    sql(svc, "delete from audit where seq = :s", s=seq)
    findings = verify(svc)
    assert len(findings) == 1
    assert findings[0].seq == seq
    assert findings[0].problem.startswith("deleted")
    assert f"row(s) {seq} missing" in findings[0].problem


def test_deleted_run_of_rows_names_the_range(svc, db_backend):
    seq = a_middle_row(svc, "state_change")
    drop_triggers(svc, db_backend)
    sql(svc, "delete from audit where seq in (:a, :b)", a=seq, b=seq + 1)
    findings = verify(svc)
    gap = [f for f in findings if f.problem.startswith("deleted")]
    assert len(gap) == 1 and gap[0].seq == seq and f"{seq}..{seq + 1}" in gap[0].problem


def test_swapped_rows_are_reordered(svc, db_backend):
    seq = a_middle_row(svc, "state_change")
    drop_triggers(svc, db_backend)
    sql(svc, "update audit set seq = -1 where seq = :s", s=seq)
    sql(svc, "update audit set seq = :s where seq = :n", s=seq, n=seq + 1)
    sql(svc, "update audit set seq = :n where seq = -1", n=seq + 1)
    findings = verify(svc)
    assert findings
    assert findings[0].seq == seq and findings[0].problem.startswith("reordered")
    assert all(f.problem.startswith("reordered") for f in findings), [str(f) for f in findings]
    assert {f.seq for f in findings} >= {seq, seq + 1}


def test_deleted_tail_is_caught_by_the_head(svc, db_backend):
    last = len(rows(svc))
    drop_triggers(svc, db_backend)
    sql(svc, "delete from audit where seq >= :s", s=last - 1)
    findings = verify(svc)
    tail = [f for f in findings if f.seq == last - 1 and f.problem.startswith("deleted")]
    assert tail, [str(f) for f in findings]
    assert f"{last - 1}..{last}" in tail[0].problem and "end" in tail[0].problem


def test_deleted_last_row_alone_is_caught_by_the_head(svc, db_backend):
    last = len(rows(svc))
    drop_triggers(svc, db_backend)
    sql(svc, "delete from audit where seq = :s", s=last)
    assert any(f.seq == last and f.problem.startswith("deleted") for f in verify(svc))


def test_edited_head_is_found(svc):
    sql(svc, "update audit_head set hash = :h where id = 1", h="f" * 64)
    findings = verify(svc)
    assert [f.problem.split(":")[0] for f in findings] == ["edited"]
    assert findings[0].seq == len(rows(svc))


# -- tampering with the decisions the chain seals ----------------------------------------------------------

def test_edited_decision_payload_names_the_event(svc):
    stored = json.loads(sql(svc, "select payload from decisions where event_id = 'p-3'").scalar_one())
    assert stored["verdict"] != "allow"
    stored["verdict"] = "allow"
    stored["actions"] = []
    sql(svc, "update decisions set payload = :p where event_id = 'p-3'", p=json.dumps(stored))
    findings = verify(svc)
    assert len(findings) == 1
    assert findings[0].seq == decision_seq(svc, "p-3")
    assert "'p-3'" in findings[0].problem and "edited" in findings[0].problem


def test_deleted_decision_names_the_event(svc):
    seq = decision_seq(svc, "m-1")
    sql(svc, "delete from decisions where event_id = 'm-1'")
    findings = verify(svc)
    assert len(findings) == 1
    assert findings[0].seq == seq
    assert "'m-1'" in findings[0].problem and "deleted" in findings[0].problem


def test_inserted_decision_is_found(svc):
    sql(svc, "insert into decisions (event_id, verdict, subject, pack_version, occurred_ms, decided_ms, payload) "
             "values ('forged', 'allow', 'x', 'v', 0, 0, '{}')")
    findings = verify(svc)
    assert len(findings) == 1 and "'forged'" in findings[0].problem


# -- the CLI ------------------------------------------------------------------------------------------------

def test_cli_audit_verify_exit_codes(svc, db_url, db_backend):
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--db", db_url])
    assert ok.exit_code == 0, ok.output
    assert "intact" in ok.output and str(len(rows(svc))) in ok.output

    seq = a_middle_row(svc, "state_change")
    drop_triggers(svc, db_backend)
    sql(svc, "delete from audit where seq = :s", s=seq)
    sql(svc, "update decisions set payload = '{}' where event_id = 'p-1'")
    bad = runner.invoke(app, ["audit", "verify", "--db", db_url])
    assert bad.exit_code == 1, bad.output
    assert f"row {seq}: deleted" in bad.output
    assert "'p-1'" in bad.output
    assert "intact" not in bad.output


def test_cli_audit_verify_on_a_missing_store_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["audit", "verify", "--db", f"sqlite:///{tmp_path / 'nothing.db'}"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
