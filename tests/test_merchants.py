"""The merchant registry (S10): code validation rule by rule, records opened by events and staff, transitions and
their refusals, audit entries per step, the account class following the record, the CLI's check-code."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from api_fixtures import open_api
from typer.testing import CliRunner

from clearcircle.cli.main import app as cli_app
from clearcircle.merchants.codes import CodeError, check_code, validate_credit_code, validate_food_licence
from clearcircle.merchants.registry import local_day

# --- building valid codes in the test, independently of the module -------------------------------------------------

CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100: no I, O, S, V, Z
USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]  # 3^(i-1) mod 31
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]  # GB 11714
ORG_VALUES = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # A=10 ... Z=35
PROVINCES = ["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42",
             "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82"]
PAIRS = [("9", "1"), ("9", "2"), ("9", "3"), ("1", "2"), ("5", "1"), ("5", "3"), ("Y", "1"), ("N", "2"), ("3", "1")]


def org_check(body: str) -> str:
    c = 11 - sum(ORG_VALUES.index(ch) * w for ch, w in zip(body, ORG_WEIGHTS, strict=True)) % 11
    return {10: "X", 11: "0"}.get(c, str(c))


def final_check(first17: str) -> str:
    c = 31 - sum(CHARS.index(ch) * w for ch, w in zip(first17, USCC_WEIGHTS, strict=True)) % 31
    return CHARS[0 if c == 31 else c]


def credit_code(rng: random.Random | None = None, *, authority: str = "9", category: str = "1",
                division: str = "310115", body: str | None = None) -> str:
    """A valid code: the organisation code's check digit, then the 18th character, computed here."""
    rng = rng or random.Random(7)
    body = body or "".join(rng.choice(CHARS) for _ in range(8))
    first17 = authority + category + division + body + org_check(body)
    return first17 + final_check(first17)


def resealed(code: str, position: int, char: str) -> str:
    """`code` with 1-based `position` changed to `char` and the 18th character recomputed (so only the rule
    about that position can break)."""
    first17 = code[: position - 1] + char + code[position:17]
    return first17 + final_check(first17)


def licence(rng: random.Random | None = None, *, business: str = "1", province: str = "31") -> str:
    rng = rng or random.Random(11)
    return "JY" + business + province + "".join(rng.choice("0123456789") for _ in range(11))


def rule_of(fn, code: str) -> str:
    with pytest.raises(CodeError) as info:
        fn(code)
    assert info.value.message and info.value.rule in str(info.value)
    return info.value.rule


# --- credit codes --------------------------------------------------------------------------------------------------


def test_generated_credit_codes_are_valid():
    rng = random.Random(2026)
    for _ in range(300):
        authority, category = rng.choice(PAIRS)
        division = rng.choice(PROVINCES) + "".join(rng.choice("0123456789") for _ in range(4))
        code = credit_code(rng, authority=authority, category=category, division=division)
        checked = validate_credit_code(code)
        assert checked.kind == "credit_code" and checked.parts["division_code"] == division
    assert validate_credit_code(credit_code(division="100000")).parts["province"] == "national"


def test_a_published_code_is_valid():
    # the example of the python-stdnum documentation: a real Beijing enterprise
    assert validate_credit_code("91110000600037341L").parts["organisation_code"] == "60003734-1"


def test_check_characters_cover_x_and_0():
    """The organisation code's 10 -> X and 11 -> 0 and the final 31 -> 0 cases all validate."""
    rng = random.Random(5)
    seen_org, seen_final = set(), set()
    for _ in range(3000):
        code = credit_code(rng)
        seen_org.add(code[16])
        seen_final.add(code[17])
        validate_credit_code(code)
    assert {"X", "0"} <= seen_org and "0" in seen_final


@pytest.mark.parametrize("length", [0, 17, 19])
def test_credit_code_length(length):
    code = (credit_code() * 2)[:length]
    assert rule_of(validate_credit_code, code) == "length"


@pytest.mark.parametrize("char", ["I", "O", "S", "V", "Z", "a", "中", " "])
@pytest.mark.parametrize("position", [1, 5, 12, 18])
def test_credit_code_charset(char, position):
    code = credit_code()
    broken = code[: position - 1] + char + code[position:]
    assert rule_of(validate_credit_code, broken) == "charset"
    with pytest.raises(CodeError, match=f"position {position}"):
        validate_credit_code(broken)


def test_organisation_code_check_digit():
    code = credit_code()
    wrong = next(c for c in "0123456789X" if c != code[16])
    broken = resealed(code, 17, wrong)  # the final character stays right: only the embedded check digit breaks
    assert final_check(broken[:17]) == broken[17]
    assert rule_of(validate_credit_code, broken) == "organisation_code_check_digit"
    with pytest.raises(CodeError, match=f"GB 11714 gives '{code[16]}'"):
        validate_credit_code(broken)


def test_final_check_character():
    code = credit_code()
    for wrong in (c for c in CHARS if c != code[17]):
        assert rule_of(validate_credit_code, code[:17] + wrong) == "check_character"


def test_registration_authority_and_category():
    code = credit_code()
    assert rule_of(validate_credit_code, resealed(code, 1, "B")) == "registration_authority"
    assert rule_of(validate_credit_code, resealed(code, 2, "4")) == "organisation_category"  # 9 has 1-3
    assert validate_credit_code(resealed(resealed(code, 1, "5"), 2, "9"))  # 5 (civil affairs) has 9


@pytest.mark.parametrize("division", ["990000", "160101", "00000A", "A10000"])
def test_division_code(division):
    code = credit_code()
    first17 = code[:2] + division + code[8:17]
    assert rule_of(validate_credit_code, first17 + final_check(first17)) == "division_code"


# --- food business licence numbers -------------------------------------------------------------------------------


def test_generated_licences_are_valid():
    rng = random.Random(3)
    for _ in range(200):
        number = licence(rng, business=rng.choice("123"), province=rng.choice(PROVINCES))
        checked = validate_food_licence(number)
        assert checked.kind == "food_licence" and "check digit" in checked.note


@pytest.mark.parametrize(("number", "rule"), [
    ("SC13101010000000", "prefix"),  # a food PRODUCTION licence, not a business licence
    ("jy13101010000000", "prefix"),
    ("JY1310101000000", "length"),
    ("JY131010100000000", "length"),
    ("JY1310101000000A", "digits"),
    ("JY1310101O000000", "digits"),
    ("JY03101010000000", "business_category"),
    ("JY43101010000000", "business_category"),
    ("JY19901010000000", "province"),
    ("JY10001010000000", "province"),
    ("JY11601010000000", "province"),
])
def test_licence_rules(number, rule):
    assert rule_of(validate_food_licence, number) == rule


def test_check_code_tells_the_kinds_apart():
    assert check_code(credit_code()).kind == "credit_code"
    assert check_code(licence()).kind == "food_licence"


# --- CLI check-code --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [credit_code(), "91110000600037341L", licence()])
def test_cli_check_code_valid_exits_0(code):
    result = CliRunner().invoke(cli_app, ["merchants", "check-code", code])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


@pytest.mark.parametrize(("code", "rule"), [
    (credit_code()[:17], "length"),
    (credit_code()[:17] + ("0" if credit_code()[17] != "0" else "1"), "check_character"),
    (resealed(credit_code(), 17, "X" if credit_code()[16] != "X" else "0"), "organisation_code_check_digit"),
    ("JY93101010000000", "business_category"),
])
def test_cli_check_code_invalid_exits_1_naming_the_rule(code, rule):
    result = CliRunner().invoke(cli_app, ["merchants", "check-code", code])
    assert result.exit_code == 1
    assert rule in " ".join(result.output.split())
    assert "Traceback" not in result.output


# --- records through events and the API (both backends) -------------------------------------------------------------

CST = timezone(timedelta(hours=8))
FUTURE = date(2031, 3, 10)  # a licence expiry staff may still verify (not in the past)
AT = datetime(2031, 3, 1, 10, 0, tzinfo=CST)


def application(id_: str, actor: str, at: datetime = AT, **body) -> dict:
    fields = {"company_name": "上海某某食品有限公司", "credit_code": credit_code(), "food_licence": licence(),
              "categories": ["food"], **body}
    return {"id": id_, "type": "merchant_application", "occurred_at": at.isoformat(), "actor": actor,
            "body": {k: v for k, v in fields.items() if v is not None}}


def post(id_: str, actor: str, at: datetime, text: str = "手工曲奇上新，优惠价出售") -> dict:
    return {"id": id_, "type": "post_created", "occurred_at": at.isoformat(), "actor": actor,
            "body": {"surface": "article", "text": text}}


@pytest.fixture
def api(db_url, tmp_path):
    with open_api(db_url, tmp_path) as a:
        a.keys["compliance"] = a.svc.store.create_key("compliance", "test-compliance")[1]
        yield a


def merchant(api, account: str) -> dict:
    got = api.client.get(f"/v1/merchants/{account}", headers=api.h("compliance"))
    assert got.status_code == 200, got.text
    return got.json()


def step(api, account: str, action: str, **body):
    return api.client.post(f"/v1/merchants/{account}/{action}", json=body, headers=api.h("compliance"))


def audit_kinds(api, subject: str) -> list[str]:
    return [r.kind for r in api.svc.store.audit_rows() if r.subject == subject]


def test_an_application_event_opens_a_pending_record(api):
    d = api.post_event(application("app-1", "shop-1"))
    assert d.status_code == 200 and d.json()["verdict"] == "allow"
    got = merchant(api, "shop-1")
    assert got["record"]["state"] == "pending" and got["record"]["food_licensed"] is False
    assert got["record"]["application_id"] == "app-1"
    assert [h["step"] for h in got["history"]] == ["applied"]
    assert "merchant_applied" in audit_kinds(api, "shop-1")
    # the same event again is one event: no second record step
    assert api.post_event(application("app-1", "shop-1")).json()["duplicate"] is True
    assert len(merchant(api, "shop-1")["history"]) == 1


@pytest.mark.parametrize(("body", "field", "rule"), [
    ({"credit_code": credit_code()[:17] + "I"}, "credit_code", "charset"),
    ({"credit_code": resealed(credit_code(), 17, "X" if credit_code()[16] != "X" else "0")}, "credit_code",
     "organisation_code_check_digit"),
    ({"food_licence": "JY93101010000000"}, "food_licence", "business_category"),
    ({"food_licence": None}, "food_licence", "required"),
])
def test_an_invalid_application_event_is_accepted_and_rejected_automatically(api, body, field, rule):
    d = api.post_event(application("app-bad", "shop-bad", **body))
    assert d.status_code == 200  # the wire contract: a well-formed event is accepted
    record = merchant(api, "shop-bad")["record"]
    assert record["state"] == "rejected"
    assert record["reason"].startswith(f"{field}: {rule}: ")
    assert "merchant_rejected_automatically" in audit_kinds(api, "shop-bad")


def test_a_late_application_does_not_replace_a_newer_one(api):
    api.post_event(application("app-new", "shop-late", at=AT))
    api.post_event(application("app-old", "shop-late", at=AT - timedelta(days=1), company_name="旧名字有限公司"))
    record = merchant(api, "shop-late")["record"]
    assert record["application_id"] == "app-new" and record["company_name"] == "上海某某食品有限公司"


def test_staff_application_422_names_field_and_rule(api):
    bad = {"account": "shop-s", "company_name": "某公司", "credit_code": credit_code()[:17] + "0"
           if credit_code()[17] != "0" else credit_code()[:17] + "1", "food_licence": "JY1310101000000",
           "categories": ["food"]}
    r = api.client.post("/v1/merchants", json=bad, headers=api.h("compliance"))
    assert r.status_code == 422
    errors = {e["field"]: e["rule"] for e in r.json()["errors"]}
    assert errors == {"body.credit_code": "check_character", "body.food_licence": "length"}
    assert api.svc.store.merchant("shop-s") is None
    good = {**bad, "credit_code": credit_code(), "food_licence": licence()}
    r = api.client.post("/v1/merchants", json=good, headers=api.h("compliance"))
    assert r.status_code == 200, r.text
    assert r.json()["record"]["state"] == "pending"
    assert merchant(api, "shop-s")["history"][0]["by"] == "api:compliance"


def test_transitions_each_audited_and_the_chain_intact(api):
    api.post_event(application("app-t", "shop-t"))
    r = step(api, "shop-t", "verify", licence_expires=FUTURE.isoformat())
    assert r.status_code == 200, r.text
    assert r.json()["record"]["state"] == "verified" and r.json()["changed"] is True
    again = step(api, "shop-t", "verify", licence_expires=FUTURE.isoformat())
    assert again.status_code == 200 and again.json()["changed"] is False  # retry-safe
    renewed = step(api, "shop-t", "verify", licence_expires=(FUTURE + timedelta(days=365)).isoformat())
    assert renewed.json()["record"]["licence_expires"] == "2032-03-09"
    r = step(api, "shop-t", "revoke", reason="licence cancelled by the market regulator")
    assert r.status_code == 200 and r.json()["record"]["state"] == "revoked"
    history = merchant(api, "shop-t")["history"]
    assert [h["step"] for h in history] == ["applied", "verified", "renewed", "revoked"]
    assert history[-1]["reason"] == "licence cancelled by the market regulator"
    kinds = audit_kinds(api, "shop-t")
    for kind in ("merchant_applied", "merchant_verified", "merchant_renewed", "merchant_revoked"):
        assert kinds.count(kind) == 1, kind
    checked, findings = api.svc.store.verify_audit()
    assert findings == [] and checked > 0


def test_refusals_are_409_with_the_state_and_its_reason(api):
    api.post_event(application("app-r", "shop-r"))
    assert step(api, "shop-r", "revoke", reason="x").status_code == 409  # pending: reject, not revoke
    r = step(api, "shop-r", "reject", reason="company name does not match the credit code")
    assert r.status_code == 200 and r.json()["record"]["state"] == "rejected"
    assert step(api, "shop-r", "reject", reason="again").json()["changed"] is False
    before = api.svc.store.counts()["audit"]
    refused = step(api, "shop-r", "verify", licence_expires=FUTURE.isoformat())
    assert refused.status_code == 409
    assert "rejected" in refused.json()["detail"]
    assert "company name does not match the credit code" in refused.json()["detail"]
    assert api.svc.store.counts()["audit"] == before  # a refused step writes nothing
    assert step(api, "nobody", "verify", licence_expires=FUTURE.isoformat()).status_code == 404


def test_verify_needs_a_future_expiry_for_a_food_licence(api):
    api.post_event(application("app-v", "shop-v"))
    missing = step(api, "shop-v", "verify")
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "body.licence_expires"
    past = step(api, "shop-v", "verify", licence_expires="2020-01-01")
    assert past.status_code == 422 and "past" in past.json()["errors"][0]["message"]
    assert step(api, "shop-v", "verify", licence_expires="10 March 2031").status_code == 422
    assert merchant(api, "shop-v")["record"]["state"] == "pending"


def test_expired_is_computed_from_the_expiry_date(api):
    api.post_event(application("app-e", "shop-e"))
    step(api, "shop-e", "verify", licence_expires=FUTURE.isoformat())
    day_of = datetime(2031, 3, 10, 23, 59, 59, tzinfo=CST).isoformat()
    day_after = datetime(2031, 3, 11, 0, 0, tzinfo=CST).isoformat()
    assert api.client.get("/v1/merchants/shop-e", params={"at": day_of},
                          headers=api.h("moderator")).json()["record"]["state"] == "verified"
    assert api.client.get("/v1/merchants/shop-e", params={"at": day_after},
                          headers=api.h("moderator")).json()["record"]["state"] == "expired"
    listed = api.client.get("/v1/merchants", params={"state": "expired", "at": day_after}, headers=api.h("admin"))
    assert [m["account"] for m in listed.json()["merchants"]] == ["shop-e"]
    assert api.client.get("/v1/merchants", params={"state": "expired"},
                          headers=api.h("admin")).json()["merchants"] == []
    assert api.client.get("/v1/merchants", params={"state": "bogus"}, headers=api.h("admin")).status_code == 422


def test_the_account_class_follows_the_record_at_each_event(api):
    api.post_event(application("app-c", "shop-c"))
    api.post_event(post("c-1", "shop-c", AT + timedelta(hours=1)))
    assert api.svc.store.account_state("shop-c").account_class is None  # pending: not yet a merchant
    step(api, "shop-c", "verify", licence_expires=FUTURE.isoformat())
    api.post_event(post("c-2", "shop-c", AT + timedelta(hours=2)))
    assert api.svc.store.account_state("shop-c").account_class == "merchant"
    api.post_event(post("c-3", "shop-c", datetime(2031, 3, 11, 9, 0, tzinfo=CST)))  # licence expired that day
    assert api.svc.store.account_state("shop-c").account_class is None
    changes = api.svc.store.account_history("shop-c")["changes"]
    assert [(c["detail"]["from"], c["detail"]["to"]) for c in changes if c.get("action") == "account_class"] == \
        [("merchant", None), (None, "merchant")]  # newest first


def test_local_day_is_asia_shanghai():
    assert local_day(int(datetime(2031, 3, 10, 16, 30, tzinfo=UTC).timestamp() * 1000)) == date(2031, 3, 11)


def test_cli_merchant_steps(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_api(db_url, tmp_path) as a:
        a.post_event(application("app-cli", "shop-cli"))
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["merchants", "list", "--db", db_url])
    assert listed.exit_code == 0 and "shop-cli" in listed.output
    done = runner.invoke(cli_app, ["merchants", "verify", "shop-cli", "--expires", "2031-03-10", "--db", db_url])
    assert done.exit_code == 0, done.output
    refused = runner.invoke(cli_app, ["merchants", "reject", "shop-cli", "--reason", "x", "--db", db_url])
    assert refused.exit_code == 1 and "revoke" in " ".join(refused.output.split())
    shown = runner.invoke(cli_app, ["merchants", "show", "shop-cli", "--db", db_url])
    assert shown.exit_code == 0 and "verified" in shown.output
    assert runner.invoke(cli_app, ["merchants", "show", "nobody", "--db", db_url]).exit_code == 1
    bad_date = runner.invoke(cli_app, ["merchants", "verify", "shop-cli", "--expires", "soon", "--db", db_url])
    assert bad_date.exit_code == 2
