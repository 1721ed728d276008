"""Entities (phone numbers, WeChat IDs, QQ numbers, e-mail, URLs and short links, prices): found through
obfuscation, spans in the original text, and the text signals built on them, up to a decision's evidence.

The texts are written for these tests, never rows of the labelled data sets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import clearcircle
from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.signals.context import SignalContext, SignalValues
from clearcircle.signals.entities import Entity, extract
from clearcircle.signals.lexicon import Lexicon
from clearcircle.signals.registry import REGISTRY
from clearcircle.signals.text import text_entities, text_hits

LISTS = Path(clearcircle.__file__).parent / "policy" / "packs" / "operating-norms" / "lists"


def found(text: str, kind: str | None = None) -> list[tuple[str, str, str]]:
    """(kind, value, text as written) of every entity, checking each span points into the text."""
    out = []
    for e in extract(text):
        assert text[e.start : e.end] == e.text, e
        if kind is None or e.kind == kind:
            out.append((e.kind, e.value, e.text))
    return out


# --- phone numbers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "written"),
    [
        ("电话13812345678", "13812345678", "13812345678"),
        ("电话：138-1234-5678，微信同号", "13812345678", "138-1234-5678"),
        ("call 138 1234 5678 now", "13812345678", "138 1234 5678"),
        ("+86 138 1234 5678", "13812345678", "86 138 1234 5678"),
        ("8613812345678", "13812345678", "8613812345678"),
        ("138.1234.5678", "13812345678", "138.1234.5678"),
        ("1 3 8 1 2 3 4 5 6 7 8", "13812345678", "1 3 8 1 2 3 4 5 6 7 8"),
        ("一三八一二三四五六七八", "13812345678", "一三八一二三四五六七八"),
        ("壹叁捌-壹贰叁肆-伍陆柒捌", "13812345678", "壹叁捌-壹贰叁肆-伍陆柒捌"),
        ("①③⑧①②③④⑤⑥⑦⑧", "13812345678", "①③⑧①②③④⑤⑥⑦⑧"),
        ("１３８１２３４５６７８", "13812345678", "１３８１２３４５６７８"),
        ("1\u200b38\u200c1234\u200d5678", "13812345678", "1\u200b38\u200c1234\u200d5678"),
        ("2人 13812345678", "13812345678", "13812345678"),  # another number before it stays out
        ("座机010-12345678", "01012345678", "010-12345678"),
        ("（0755）8888 6666", "075588886666", "0755）8888 6666"),
        ("热线400-123-4567", "4001234567", "400-123-4567"),
    ],
)
def test_phone_numbers(text: str, value: str, written: str) -> None:
    assert found(text, "phone") == [("phone", value, written)]


@pytest.mark.parametrize(
    "text",
    [
        "身份证110101199003071234",  # 18 digits: no phone number cut out of it
        "订单号 2024010112345678",
        "卡号 6222 0012 3456 7890",
        "圆周率3.14159265358",
        "今天是2024-01-01，明天2024-01-02",
        "共计12345678元",
        "一二三四五，上山打老虎",
    ],
)
def test_numbers_that_are_not_phone_numbers(text: str) -> None:
    assert found(text, "phone") == []


# --- WeChat IDs and QQ numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "written"),
    [
        ("加V：abc_123 谢谢", "abc123", "abc_123"),
        ("加微信lucy2024了解", "lucy2024", "lucy2024"),
        ("微信号：zhang_san", "zhangsan", "zhang_san"),
        ("wx: abc123 thanks", "abc123", "abc123"),
        ("ＷＸ：ａｂｃ１２３", "abc123", "ａｂｃ１２３"),
        ("V❤：shop_888", "shop888", "shop_888"),
        ("薇信 Lucy-2024", "lucy2024", "Lucy-2024"),
        ("wechat: zhangsan", "zhangsan", "zhangsan"),
        ("wxid_abc123def", "wxidabc123def", "wxid_abc123def"),
    ],
)
def test_wechat_ids(text: str, value: str, written: str) -> None:
    assert found(text, "wechat") == [("wechat", value, written)]


@pytest.mark.parametrize(
    "text",
    [
        "my wechat please",  # a plain word after an English marker needs ":" to be an ID
        "vivid abc123",  # v inside a word is no marker
        "加vabc123",  # glued to an ASCII marker: could be anything
        "微信abc",  # too short
        "微信 abcdefghijklmnopqrstuvwxyz",  # too long
        "我在微信上看到了",
        "微信下单",
    ],
)
def test_not_wechat_ids(text: str) -> None:
    assert found(text, "wechat") == []


@pytest.mark.parametrize(
    ("text", "value", "written"),
    [
        ("QQ：12345678", "12345678", "12345678"),
        ("qq号 8 8 6 6 5 5 4 4", "88665544", "8 8 6 6 5 5 4 4"),
        ("扣扣号八八六六五五四四", "88665544", "八八六六五五四四"),
        ("企鹅 123456789", "123456789", "123456789"),
        ("加Q 10001", "10001", "10001"),
        ("ＱＱ群：６８４４２４９９１", "684424991", "６８４４２４９９１"),
    ],
)
def test_qq_numbers(text: str, value: str, written: str) -> None:
    assert found(text, "qq") == [("qq", value, written)]


@pytest.mark.parametrize("text", ["Q3 2024营收增长", "企鹅12只", "faq 12345", "QQ音乐真好听", "qq 1234"])
def test_not_qq_numbers(text: str) -> None:
    assert found(text, "qq") == []


def test_a_qq_number_is_not_also_a_phone_number() -> None:
    assert [k for k, _, _ in found("QQ 13812345678")] == ["qq"]


# --- links, e-mail, prices -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "written"),
    [
        ("看这个 https://t.cn/A6xYz12 快", "short_link", "https://t.cn/A6xYz12"),
        ("go to bit.ly/3abc.", "short_link", "bit.ly/3abc"),
        ("戳 url.cn/5AbCdE 领取", "short_link", "url.cn/5AbCdE"),
        ("详见 example.com.cn/abc，谢谢", "url", "example.com.cn/abc"),
        ("官网www.example.com!", "url", "www.example.com"),
        ("https://example.com/item/13812345678", "url", "https://example.com/item/13812345678"),
        ("邮箱abc@qq.com", "email", "abc@qq.com"),
    ],
)
def test_links_and_email(text: str, kind: str, written: str) -> None:
    assert found(text) == [(kind, written, written)]  # and the digits of a link are no phone number


@pytest.mark.parametrize("text", ["e.g. this", "version 3.14", "node.js rocks", "Mr.Li said hi", "谢谢。"])
def test_not_links(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "prices"),
    [
        ("原价¥199，现价99元包邮", [("199 CNY", "¥199"), ("99 CNY", "99元")]),
        ("原价￥ 1,299", [("1299 CNY", "￥ 1,299")]),
        ("99块，包邮", [("99 CNY", "99块")]),
        ("只要9.9元", [("9.9 CNY", "9.9元")]),
        ("RMB 99 or $15", [("99 CNY", "RMB 99"), ("15 USD", "$15")]),
        ("5 dollars each", [("5 USD", "5 dollars")]),
        ("３９９元", [("399 CNY", "３９９元")]),
    ],
)
def test_prices(text: str, prices: list[tuple[str, str]]) -> None:
    assert [(v, w) for _, v, w in found(text, "price")] == prices


@pytest.mark.parametrize("text", ["买了3块蛋糕", "2024元旦快乐", "3个人", "abcusd 5", "第2名"])
def test_not_prices(text: str) -> None:
    assert found(text, "price") == []


# --- the signals ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin() -> Lexicon:
    return Lexicon.from_dir(LISTS)


def _ctx(lexicon: Lexicon | None, text: str, type_: str = "post_created") -> SignalContext:
    body = {"surface": "moments", "text": text} if type_ == "post_created" else {"target": "u-2", "message": text}
    event = parse_event({"id": "en-1", "type": type_, "occurred_at": "2026-03-02T09:00:00+08:00",
                         "actor": "u-1", "body": body})
    resources = {"lexicon": lexicon} if lexicon is not None else {}
    return SignalContext(event, 0, counters=None, lookups=None, resources=resources)  # type: ignore[arg-type]


def test_contact_signals(builtin: Lexicon) -> None:
    text = "新品到了，电话一三八 一二三四 五六七八，同号 138-1234-5678，QQ 88886666，原价¥199现价99元"
    values = SignalValues(REGISTRY, _ctx(builtin, text))
    assert values["text.contacts"] == 2  # one phone number written twice, one QQ number
    assert values["text.entities"] == ["phone", "qq", "price"]
    assert values["text.has_price"] is True
    assert "contact" in values["text.categories"]
    evidence = [e for e in values["text.evidence"] if e["category"] == "contact"]
    assert {(e["term"], e["text"]) for e in evidence} >= {
        ("phone", "一三八 一二三四 五六七八"), ("phone", "138-1234-5678"), ("qq", "88886666")}
    for item in values["text.evidence"]:
        a, b = item["span"]
        assert text[a:b] == item["text"] and item["field"] == "body.text"


def test_a_number_alone_makes_the_contact_category(builtin: Lexicon) -> None:
    ctx = _ctx(builtin, "你好，我是小王，13812345678", type_="friend_request")
    assert [(fh.field, fh.hit.category, fh.hit.term) for fh in text_hits(ctx)] == [
        ("body.message", "contact", "phone")]
    assert SignalValues(REGISTRY, ctx)["text.categories"] == ["contact"]


def test_entities_without_a_lexicon() -> None:
    ctx = _ctx(None, "wx: abc123")
    assert [fe.entity.kind for fe in text_entities(ctx)] == ["wechat"]
    assert SignalValues(REGISTRY, ctx)["text.categories"] == ["contact"]


def test_an_ordinary_post_has_no_entities(builtin: Lexicon) -> None:
    values = SignalValues(REGISTRY, _ctx(builtin, "周末和朋友去爬山，走了2万步，风景很美"))
    assert values["text.entities"] == [] and values["text.contacts"] == 0 and values["text.has_price"] is False


def test_entity_fields_are_frozen() -> None:
    entity = extract("QQ 12345678")[0]
    assert entity == Entity("qq", "12345678", 3, 11, "12345678")
    with pytest.raises(AttributeError):
        entity.kind = "phone"  # type: ignore[misc]


# --- end to end: a decision's evidence -------------------------------------------------------------------------


def test_a_phone_number_is_evidence_of_contact_solicitation(sqlite_url: str, tmp_path: Path) -> None:
    from clearcircle.service import open_service

    service = open_service(Settings(db_url=sqlite_url, key_file=tmp_path / "k"))
    try:
        text = "新款连衣裙上新，电话 壹叁捌 1234 ５６７８"
        event = parse_event({"id": "en-e2e-1", "type": "post_created", "occurred_at": "2026-03-02T09:00:00+08:00",
                             "actor": "seller-1", "body": {"surface": "moments", "text": text}})
        decision = service.pipeline.submit([event])[0].decision
    finally:
        service.close()
    assert "moments-contact-solicitation" in decision["rules"]
    spans = [e for e in decision["evidence"] if e.get("category") == "contact"]
    assert [e["text"] for e in spans] == ["壹叁捌 1234 ５６７８"]
    a, b = spans[0]["span"]
    assert text[a:b] == spans[0]["text"] and spans[0]["field"] == "body.text"


# --- the benchmark command -------------------------------------------------------------------------------------


def test_bench_text_command_runs() -> None:
    from clearcircle.cli.main import app

    result = CliRunner().invoke(app, ["bench-text", "--messages", "60", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    assert "ahocorasick_rs" in result.output and "pyahocorasick" in result.output
    assert "ratio rs/py" in result.output
    assert "text path (normalise + lexicon + entities)" in result.output and "messages/s" in result.output
