"""Food-sale gating (S10) end to end on both backends: the built-in rule `unlicensed-food-sale` stops a food-sale
post unless the account holds a verified food licence valid on the post's day; primary farm produce is exempt.

Each branch of the rule's condition is taken once: no food term, no selling cue, a commercial / contact / price
cue, all food terms covered by farm produce (and a farm word that does not cover the rest), a merchant in each
registry state, and the licence's last day (the day before, the day of, the day after, across time zones).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.policy.decision import Decision
from clearcircle.service import open_service

RULE = "unlicensed-food-sale"
CST = timezone(timedelta(hours=8))
EXPIRES = date(2031, 3, 10)
AT = datetime(2031, 3, 1, 10, 0, tzinfo=CST)
CODE = "91110000600037341L"  # a published valid credit code
LICENCE = "JY13101010000000"
COMMERCIAL = "手工曲奇上新，优惠价出售"  # food + commercial
CONTACT = "私房蛋糕预订，详情私聊"  # food + contact
PRICE = "手工曲奇 25元一盒"  # food + a price, no list term
PRICE_FULLWIDTH = "自制辣椒酱 ￥１８"
NO_CUE = "今天在家自制了酸奶，味道不错"  # food, nothing for sale
NO_FOOD = "新品上市，全国包邮，详情私聊"  # selling, but not food
FARM = "自家的土鸡蛋，30元一盒，欢迎订购"  # every food term inside a farm-produce term
FARM_AND_MORE = "农家自制腊肉和土鸡蛋，优惠价，欢迎订购"  # 农家 does not cover 农家自制 / 自制腊肉

_ids = itertools.count(1)


@pytest.fixture
def svc(db_url, tmp_path):
    service = open_service(Settings(db_url=db_url, key_file=tmp_path / "k"))
    yield service
    service.close()


def event(type_: str, actor: str, at: datetime, **body: Any):
    return parse_event({"id": f"fg-{next(_ids)}", "type": type_, "occurred_at": at.isoformat(), "actor": actor,
                        "body": body})


def post(svc, actor: str, text: str, at: datetime = AT) -> dict[str, Any]:
    decision = svc.pipeline.submit([event("post_created", actor, at, surface="moments", text=text)])[0].decision
    Decision.model_validate(decision)
    return decision


def apply(svc, actor: str, **body: Any) -> None:
    fields = {"company_name": "上海某某食品有限公司", "credit_code": CODE, "food_licence": LICENCE,
              "categories": ["food"], **body}
    svc.pipeline.submit([event("merchant_application", actor, AT - timedelta(days=1), **fields)])


def licensed(svc, actor: str, expires: date = EXPIRES) -> None:
    apply(svc, actor)
    assert svc.store.merchant_step(actor, "verify", "test", licence_expires=expires).changed


def stopped(decision: dict[str, Any]) -> bool:
    if RULE in decision["rules"]:
        assert decision["verdict"] == "remove"
        return True
    assert RULE not in decision["shadow_rules"]
    return False


@pytest.mark.parametrize("text", [COMMERCIAL, CONTACT, PRICE, PRICE_FULLWIDTH, FARM_AND_MORE])
def test_a_food_sale_without_a_licence_is_stopped(svc, text):
    d = post(svc, "home-baker", text)
    assert stopped(d)
    assert d["signals"]["merchant.food_licensed"] is False
    spans = [e for e in d["evidence"] if e["rule"] == RULE and e["signal"] == "text.evidence"]
    assert any(e["category"] == "food" and text[e["span"][0]:e["span"][1]] == e["text"] for e in spans)


@pytest.mark.parametrize("text", [NO_CUE, NO_FOOD, FARM, "今天的晚霞真好看"])
def test_not_a_food_sale_or_farm_produce_goes_through(svc, text):
    d = post(svc, "neighbour", text)
    assert not stopped(d)


def test_farm_produce_exemption_is_in_the_decision(svc):
    d = post(svc, "farmer", FARM)
    assert d["signals"]["text.food_is_farm_produce"] is True
    assert d["verdict"] == "allow"
    d = post(svc, "farmer", FARM_AND_MORE)
    assert d["signals"]["text.food_is_farm_produce"] is False and stopped(d)


def test_price_cue_alone_makes_a_sale(svc):
    d = post(svc, "price-only", PRICE)
    assert d["signals"]["text.has_price"] is True
    assert "commercial" not in d["signals"]["text.categories"] and stopped(d)


def test_a_licensed_merchant_goes_through(svc):
    licensed(svc, "bakery")
    for text in (COMMERCIAL, CONTACT, PRICE):
        d = post(svc, "bakery", text)
        assert not stopped(d) and d["signals"]["merchant.food_licensed"] is True


@pytest.mark.parametrize("state", ["pending", "rejected", "revoked", "no_licence"])
def test_a_merchant_without_a_valid_food_licence_is_stopped(svc, state):
    if state == "no_licence":  # a verified merchant of other goods
        apply(svc, "shop", food_licence=None, categories=["cosmetics"])
        svc.store.merchant_step("shop", "verify", "test")
    elif state == "rejected":
        apply(svc, "shop", credit_code=CODE[:17] + "M")
    else:
        apply(svc, "shop")
        if state == "revoked":
            svc.store.merchant_step("shop", "verify", "test", licence_expires=EXPIRES)
            svc.store.merchant_step("shop", "revoke", "test", reason="licence cancelled")
    d = post(svc, "shop", COMMERCIAL)
    assert stopped(d)
    assert d["signals"]["merchant.food_licensed"] is False


@pytest.mark.parametrize(("at", "allowed"), [
    (datetime(2031, 3, 9, 12, 0, tzinfo=CST), True),  # the day before
    (datetime(2031, 3, 10, 0, 0, tzinfo=CST), True),  # the day of: valid through its expiry date
    (datetime(2031, 3, 10, 23, 59, 59, 999000, tzinfo=CST), True),
    (datetime(2031, 3, 10, 15, 59, 59, tzinfo=UTC), True),  # 23:59:59 in Shanghai
    (datetime(2031, 3, 11, 0, 0, tzinfo=CST), False),  # the day after
    (datetime(2031, 3, 10, 16, 0, tzinfo=UTC), False),  # 00:00 on the 11th in Shanghai
    (datetime(2031, 3, 10, 12, 0, tzinfo=timezone(timedelta(hours=-8))), False),  # the 10th in LA, the 11th here
])
def test_the_day_of_expiry(svc, at, allowed):
    licensed(svc, "seasonal")
    d = post(svc, "seasonal", COMMERCIAL, at)
    assert stopped(d) is not allowed
    assert svc.store.merchant("seasonal").state_at(int(at.timestamp() * 1000)) == ("verified" if allowed else
                                                                                   "expired")


def test_verification_counts_from_the_next_event_without_a_restart(svc):
    apply(svc, "new-shop")
    assert stopped(post(svc, "new-shop", COMMERCIAL))
    svc.store.merchant_step("new-shop", "verify", "test", licence_expires=EXPIRES)
    assert not stopped(post(svc, "new-shop", COMMERCIAL, AT + timedelta(minutes=1)))
    svc.store.merchant_step("new-shop", "revoke", "test", reason="complaints confirmed")
    assert stopped(post(svc, "new-shop", COMMERCIAL, AT + timedelta(minutes=2)))


def test_an_application_and_a_post_in_one_batch(svc):
    """The batch sees its own application: pending is no licence, and the record is written with the batch."""
    events = [event("merchant_application", "batch-shop", AT, company_name="某某食品有限公司", credit_code=CODE,
                    food_licence=LICENCE, categories=["food"]),
              event("post_created", "batch-shop", AT + timedelta(seconds=1), surface="moments", text=COMMERCIAL)]
    decisions = [o.decision for o in svc.pipeline.submit(events)]
    assert stopped(decisions[1]) and decisions[1]["signals"]["merchant.food_licensed"] is False
    assert svc.store.merchant("batch-shop").status == "pending"
    assert svc.store.verify_audit()[1] == []


# --- public accounts that sell must register their company (S10) ----------------------------------------------

SALE_RULE = "unregistered-public-account-sale"
ARTICLE_SALE = "春季新款连衣裙到货，每件199元，点击下单"


def article(svc, actor: str, text: str) -> dict[str, Any]:
    return svc.pipeline.submit([event("post_created", actor, AT, surface="article", text=text)])[0].decision


@pytest.mark.parametrize("account_type", ["subscription", "service"])
def test_a_public_account_selling_unregistered_is_queued(svc, account_type):
    svc.pipeline.submit([event("account_registered", "shop-pa", AT - timedelta(days=30), account_type=account_type)])
    d = article(svc, "shop-pa", ARTICLE_SALE)
    assert SALE_RULE in d["rules"] and d["verdict"] == "review"
    assert {e["signal"]: e.get("value") for e in d["evidence"] if e["rule"] == SALE_RULE}["merchant.state"] == "none"


def test_a_registered_public_account_sells_freely(svc):
    svc.pipeline.submit([event("account_registered", "brand-pa", AT - timedelta(days=30), account_type="service")])
    apply(svc, "brand-pa", categories=["clothing"], food_licence=None)
    assert svc.store.merchant_step("brand-pa", "verify", "test", licence_expires=EXPIRES).changed
    assert SALE_RULE not in article(svc, "brand-pa", ARTICLE_SALE)["rules"]


def test_personal_accounts_and_articles_without_a_sale_are_not_queued(svc):
    svc.pipeline.submit([event("account_registered", "person-pa", AT - timedelta(days=30), account_type="personal"),
                         event("account_registered", "news-pa", AT - timedelta(days=30), account_type="subscription")])
    assert SALE_RULE not in article(svc, "person-pa", ARTICLE_SALE)["rules"]
    assert SALE_RULE not in article(svc, "news-pa", "本周城市新闻回顾：地铁新线开通")["rules"]
