"""Keyed hashing of personal identifiers: canonical forms link, keys separate, raw values are never stored."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.events.identifiers import HASHED_FIELDS, PREFIX, canonical_identifier, hash_identifiers, hash_value
from clearcircle.service import Service, open_service
from clearcircle.signals.context import SignalContext
from clearcircle.signals.registry import load_builtin_signals

KEY_A = b"k" * 32
KEY_B = b"K" * 32
HASH_RE = re.compile(r"h1:[0-9a-f]{64}")


# -- unit: canonical forms and keyed hashes --------------------------------------------------------------

@pytest.mark.parametrize("written", ["+86 138-0013-8000", "13800138000", "138 0013 8000", "+8613800138000",
                                     "(+86) 138.0013.8000"])
def test_same_phone_written_differently_hashes_the_same(written):
    assert hash_value("phone", written, KEY_A) == hash_value("phone", "13800138000", KEY_A)
    assert canonical_identifier("phone", written) == "13800138000"


def test_different_phones_hash_differently():
    assert hash_value("phone", "13800138000", KEY_A) != hash_value("phone", "13800138001", KEY_A)


def test_different_keys_give_different_hashes():
    for field in HASHED_FIELDS:
        assert hash_value(field, "13800138000", KEY_A) != hash_value(field, "13800138000", KEY_B)


def test_hash_is_keyed_hmac_not_plain_digest():
    import hashlib

    value = "13800138000"
    digest = hash_value("phone", value, KEY_A).removeprefix(PREFIX)
    for plain in (value, f"phone\x00{value}"):
        assert digest != hashlib.sha256(plain.encode()).hexdigest()


def test_fields_are_tagged_so_a_phone_never_equals_a_device():
    assert hash_value("phone", "13800138000", KEY_A) != hash_value("device_id", "13800138000", KEY_A)


def test_device_ids_fold_case_and_surrounding_space():
    assert hash_value("device_id", "  ABC-Def-01 ", KEY_A) == hash_value("device_id", "abc-def-01", KEY_A)
    assert hash_value("device_id", "abc-def-01", KEY_A) != hash_value("device_id", "abc-def-02", KEY_A)


def test_hash_shape_and_determinism():
    h = hash_value("payment_id", "pay-1", KEY_A)
    assert HASH_RE.fullmatch(h)
    assert h == hash_value("payment_id", "pay-1", KEY_A)
    assert "pay-1" not in h


def test_hash_identifiers_replaces_exactly_the_identifier_fields():
    body = {"account_type": "personal", "device_id": "DEV-1", "phone": "+86 138-0013-8000",
            "payment_id": "pay-1", "id_number": "11010119900307663X", "display_name": "小王"}
    out = hash_identifiers(body, KEY_A)
    assert body["phone"] == "+86 138-0013-8000", "the input is not modified"
    for field in HASHED_FIELDS:
        assert HASH_RE.fullmatch(out[field]), field
        assert out[field] == hash_value(field, body[field], KEY_A)
    assert out["account_type"] == "personal" and out["display_name"] == "小王"
    # hashing twice is idempotent: a stored (hashed) body replays to the same hashes
    assert hash_identifiers(out, KEY_A) == out


def test_hash_identifiers_leaves_absent_and_empty_values():
    out = hash_identifiers({"account_type": "personal", "phone": None, "device_id": ""}, KEY_A)
    assert out == {"account_type": "personal", "phone": None, "device_id": ""}


def test_a_raw_value_that_merely_starts_with_the_prefix_is_still_hashed():
    # only a real keyed hash (h1: + 64 hex) may pass through unhashed; anything else is a raw identifier
    out = hash_identifiers({"account_type": "personal", "device_id": "h1:DEVICE-RAW-7"}, KEY_A)
    assert out["device_id"] != "h1:DEVICE-RAW-7"
    assert HASH_RE.fullmatch(out["device_id"])


# -- through the pipeline: raw values never reach the store ----------------------------------------------

RAW = {
    "phone": "+86 139-7531-8642",
    "device_id": "DEV-Zq7-RawDevice-x91",
    "payment_id": "pay_acct_RAW_552190",
    "id_number": "31011519870412853X",
}


def _needles() -> list[str]:
    """The raw values, their canonical forms and their digit-only forms (long enough to mean something)."""
    out: set[str] = set()
    for field, value in RAW.items():
        out.add(value)
        out.add(canonical_identifier(field, value))
        digits = re.sub(r"\D", "", value)
        if len(digits) >= 8:
            out.add(digits)
    out.add("13975318642")
    out.add("8613975318642")
    return sorted(out)


def _event(event_id: str, type_: str, actor: str, body: dict[str, Any], day: int = 2) -> Any:
    return parse_event({"id": event_id, "type": type_, "occurred_at": f"2026-03-{day:02d}T09:00:00+08:00",
                        "actor": actor, "body": body})


def _service(db_url: str, tmp_path: Path) -> Service:
    return open_service(Settings(db_url=db_url, key_file=tmp_path / "hash.key"))


def _dump_database(engine: sa.Engine) -> list[tuple[str, str, str]]:
    """(table, column, value) for every non-null value of every column of every table."""
    out = []
    with engine.connect() as conn:
        insp = sa.inspect(conn)
        for table in insp.get_table_names():
            cols = [c["name"] for c in insp.get_columns(table)]
            tbl = sa.table(table, *[sa.column(c) for c in cols])
            for row in conn.execute(sa.select(tbl)):
                for col, value in zip(cols, row, strict=True):
                    if value is not None:
                        out.append((table, col, str(value)))
    return out


def test_raw_identifiers_are_stored_nowhere(db_url, db_backend, tmp_path):
    svc = _service(db_url, tmp_path)
    try:
        outcomes = svc.pipeline.submit([
            _event("reg-1", "account_registered", "acct-1", {"account_type": "personal", **RAW,
                                                             "display_name": "Shop"}),
            _event("reg-2", "account_registered", "acct-2", {"account_type": "personal", "phone": "13975318642"},
                   day=3),
            _event("post-1", "post_created", "acct-1", {"surface": "moments", "text": "hello"}, day=3),
        ])
        assert len(outcomes) == 3 and not any(o.duplicate for o in outcomes)
        dump = _dump_database(svc.store.engine)
        tables = {t for t, _c, _v in dump}
        assert {"events", "decisions", "accounts", "identity_links", "audit"} <= tables
        # the identifiers did arrive and were stored -- as keyed hashes
        links = [(v, t) for t, c, v in dump if t == "identity_links" and c == "value_hash"]
        assert len(links) == 5
        assert all(HASH_RE.fullmatch(v) for v, _t in links)
        haystack = [(t, c, v.casefold()) for t, c, v in dump]
        for needle in _needles():
            hits = [(t, c) for t, c, v in haystack if needle.casefold() in v]
            assert not hits, f"raw identifier {needle!r} stored in {hits}"
        assert any("shop" in v for _t, _c, v in haystack), "non-identifier fields are stored as sent"
    finally:
        svc.close()
    if db_backend == "sqlite":
        db_file = Path(db_url.removeprefix("sqlite:///"))
        files = [p for p in db_file.parent.iterdir() if p.name.startswith(db_file.name)]
        assert db_file in files
        for path in files:
            data = path.read_bytes().lower()
            for needle in _needles():
                assert needle.lower().encode() not in data, f"{needle!r} in the bytes of {path.name}"
                assert needle.lower().encode("utf-16-le") not in data


def test_two_accounts_sharing_a_device_are_linked(db_url, tmp_path):
    svc = _service(db_url, tmp_path)
    try:
        svc.pipeline.submit([
            _event("reg-a", "account_registered", "acct-a", {"account_type": "personal", "device_id": "Phone-XYZ"}),
            _event("reg-b", "account_registered", "acct-b", {"account_type": "personal", "device_id": "phone-xyz "},
                   day=3),
            _event("reg-c", "account_registered", "acct-c", {"account_type": "personal", "device_id": "other"},
                   day=3),
        ])
        registry = load_builtin_signals()
        event = _event("like-b", "like", "acct-b", {"item": "p"}, day=4)
        with svc.store.unit() as uow:
            assert uow.linked_accounts("acct-b") == [("device_id", "acct-a")]
            assert uow.linked_accounts("acct-a") == [("device_id", "acct-b")]
            assert uow.linked_accounts("acct-c") == []
            ctx = SignalContext(event, 0, uow, uow, svc.pack.resources)
            assert registry["identity.linked_accounts"].fn(ctx) == 1
            assert registry["identity.banned_links"].fn(ctx) == 0
    finally:
        svc.close()


def test_ban_evasion_through_a_shared_device(db_url, tmp_path):
    svc = _service(db_url, tmp_path)
    try:
        first = svc.pipeline.submit([
            _event("reg-1", "account_registered", "evader-1",
                   {"account_type": "personal", "device_id": "DEV-777", "phone": "+86 150-0000-1111"}),
        ])[0].decision
        assert first["verdict"] == "allow"
        ban = svc.pipeline.submit([
            _event("mod-1", "moderator_action", "mod", {"target": "evader-1", "action": "ban", "reason": "mlm"},
                   day=3),
        ])[0].decision
        assert ban["verdict"] == "ban"
        # a fresh account on the same device (written differently) and an unrelated one
        outcomes = svc.pipeline.submit([
            _event("reg-2", "account_registered", "evader-2", {"account_type": "personal", "device_id": "dev-777"},
                   day=4),
            _event("reg-3", "account_registered", "innocent", {"account_type": "personal", "device_id": "DEV-778"},
                   day=4),
        ])
        second, third = (o.decision for o in outcomes)
        assert "ban-evasion-link" in second["rules"]
        assert second["verdict"] == "review"
        assert second["signals"]["identity.banned_links"] == 1
        assert any(a["action"] == "case_opened" and a["account"] == "evader-2" for a in second["actions"])
        assert third["verdict"] == "allow" and "ban-evasion-link" not in third["rules"]
        # the same phone in a different format links too
        fourth = svc.pipeline.submit([
            _event("reg-4", "account_registered", "evader-3", {"account_type": "personal", "phone": "15000001111"},
                   day=5),
        ])[0].decision
        assert "ban-evasion-link" in fourth["rules"] and fourth["verdict"] == "review"
    finally:
        svc.close()


def test_a_different_hash_key_does_not_link_across_keys(make_db_url, tmp_path):
    """The same device under another deployment's key is a different hash (keys are not interchangeable)."""
    url = make_db_url()
    a = open_service(Settings(db_url=url, hash_key="key-one"))
    try:
        a.pipeline.submit([_event("r1", "account_registered", "x1", {"account_type": "personal", "device_id": "d"})])
    finally:
        a.close()
    b = open_service(Settings(db_url=url, hash_key="key-two"))
    try:
        b.pipeline.submit([_event("r2", "account_registered", "x2", {"account_type": "personal", "device_id": "d"},
                                  day=3)])
        with b.store.engine.connect() as conn:
            hashes = conn.execute(sa.text("select account, value_hash from identity_links order by account")).all()
        assert [r[0] for r in hashes] == ["x1", "x2"]
        assert hashes[0][1] != hashes[1][1]
        assert hashes[0][1] == hash_value("device_id", "d", b"key-one")
        assert hashes[1][1] == hash_value("device_id", "d", b"key-two")
    finally:
        b.close()
