"""Issue 3's obfuscation tactics, each seen through with the evidence shown as the user wrote it, and ordinary
friend-feed posts (written for these tests) left alone.

The texts here are written for the tests, never rows of the labelled data sets.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clearcircle
from clearcircle.signals import variants
from clearcircle.signals.lexicon import Hit, Lexicon
from clearcircle.signals.text import analyse_text
from clearcircle.signals.text_normalize import Normalizer, normalize

LISTS = Path(clearcircle.__file__).parent / "policy" / "packs" / "operating-norms" / "lists"
CONFUSABLES = Path(os.environ.get("CLEARCIRCLE_SHARED", "/work/shared")) / "data" / "zh-confusables"
SERIOUS = {"contact", "induced_share", "mlm", "counterfeit"}


@pytest.fixture(scope="module")
def builtin() -> Lexicon:
    return Lexicon.from_dir(LISTS)


def hits_of(lexicon: Lexicon, text: str) -> list[Hit]:
    hits, _ = analyse_text(text, lexicon)
    for hit in hits:
        assert text[hit.start : hit.end] == hit.text  # evidence is always the user's own text
    return hits


# --- every tactic of the issue -----------------------------------------------------------------------------

TACTICS = [
    # (tactic, text, category, list term, evidence as written)
    ("加V", "需要的朋友加V详聊", "contact", "加微信", "加V"),
    ("+V", "有意者+V了解", "contact", "加微信", "+V"),
    ("➕V", "有意者➕V了解", "contact", "加微信", "➕V"),
    ("薇信", "需要的加薇信", "contact", "加微信", "加薇信"),
    ("薇信 alone", "薇信：abc123", "contact", "薇信", "薇信"),
    ("威芯", "感兴趣加威芯", "contact", "加微信", "加威芯"),
    ("微 信", "请加 微 信", "contact", "加微信", "加 微 信"),
    ("V❤", "V❤：shop_2024", "contact", "v心", "V❤"),
    ("wx", "wx：abc123", "contact", "wx", "wx"),
    ("加wx", "加wx详聊", "contact", "加微信", "加wx"),
    ("weixin", "jia weixin: abc123", "contact", "加微信", "jia weixin"),
    ("pinyin", "jia wei xin 详聊", "contact", "加微信", "jia wei xin"),
    ("pinyin + vx", "jia vx 详聊", "contact", "加微信", "jia vx"),
    ("initials", "宝妈在家 fzxx 月入过万", "mlm", "发展下线", "fzxx"),
    ("full pinyin", "诚招代理 fa zhan xia xian", "mlm", "发展下线", "fa zhan xia xian"),
    ("扣扣", "扣扣号多少", "contact", "qq号", "扣扣号"),
    ("企鹅", "加企鹅详聊", "contact", "加qq", "加企鹅"),
    ("traditional", "誠招代理，發展下線", "mlm", "发展下线", "發展下線"),
    ("traditional share", "轉發朋友圈送好禮", "induced_share", "转发朋友圈送", "轉發朋友圈送"),
    ("full width", "加ＶＸ了解", "contact", "加微信", "加ＶＸ"),
    ("full width alone", "ＷＸ：ａｂｃ１２３", "contact", "wx", "ＷＸ"),
    ("zero width", "加\u200b微\u200c信", "contact", "加微信", "加\u200b微\u200c信"),
    ("symbols between", "高*仿*名*表", "counterfeit", "高仿", "高*仿"),
    ("emoji between", "集🌹赞🌹送", "induced_share", "集赞送", "集🌹赞🌹送"),
    ("strike-through", "代\u0336购\u0336", "counterfeit", "代购", "代\u0336购"),
    ("repeats", "转转转转发朋友圈送", "induced_share", "转发朋友圈送", "转转转转发朋友圈送"[2:]),
    ("numbers as 三", "转发三个群即可", "induced_share", "转发三个群", "转发三个群"),
    ("numbers as ３", "转发３个群即可", "induced_share", "转发3个群", "转发３个群"),
]


@pytest.mark.parametrize(("tactic", "text", "category", "term", "evidence"), TACTICS, ids=[t[0] for t in TACTICS])
def test_each_tactic_is_seen_through(builtin: Lexicon, tactic: str, text: str, category: str, term: str,
                                     evidence: str) -> None:
    hits = hits_of(builtin, text)
    assert Hit(category, term, text.index(evidence), text.index(evidence) + len(evidence), evidence) in hits, hits


NUMBERS = [
    ("一", "电话一三八 一二三四 五六七八"),
    ("壹", "电话壹叁捌壹贰叁肆伍陆柒捌"),
    ("①", "电话①③⑧①②③④⑤⑥⑦⑧"),
    ("❶", "电话❶❸❽-❶❷❸❹-❺❻❼❽"),
    ("１", "电话１３８ １２３４ ５６７８"),
    ("mixed", "电话1三8 壹2③4 5６七8"),
    ("zero width", "电话1\u200b3\u200b8\u200b1\u200b2\u200b3\u200b4\u200b5\u200b6\u200b7\u200b8"),
    ("幺", "电话幺三八幺二三四五六七八"),
]


@pytest.mark.parametrize(("tactic", "text"), NUMBERS, ids=[n[0] for n in NUMBERS])
def test_numbers_written_as_numerals_are_a_phone_number(builtin: Lexicon, tactic: str, text: str) -> None:
    hits, entities = analyse_text(text, builtin)
    phones = [e for e in entities if e.kind == "phone"]
    assert [p.value for p in phones] == ["13812345678"]
    assert phones[0].text == text[2:]  # the whole number as written, from its first to its last digit
    assert Hit("contact", "phone", 2, len(text), text[2:]) in hits  # a number alone is contact solicitation


# --- the normaliser's variant steps, both ways ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("一三八", "138"),  # a run of three numerals: digits
        ("二〇二四年", "2024年"),
        ("1三8", "138"),
        ("壹贰叁", "123"),
        ("QQ 88888888", "qq88888888"),  # digits never collapse as repeats
        ("一起去吃饭", "一起去吃饭"),  # 一 in a word stays a character
        ("三四个人", "三四个人"),  # two numerals: an everyday approximation, not a number
        ("乱七八糟", "乱七八糟"),
        ("十一点见", "十一点见"),  # 十 is not a digit, so 一 stands alone
        ("第一名", "第一名"),
        ("大陆", "大陆"),  # 陆 is 6 only among numerals
        ("參加", "参加"),  # 参 (參) is never a numeral
    ],
)
def test_ideographic_numerals_become_digits_only_in_runs(text: str, normalised: str) -> None:
    assert normalize(text).text == normalised


def test_digit_forms_fold_everywhere() -> None:
    assert normalize("❶➀⓵١").text == "1111"
    assert normalize("第❷名").text == "第2名"
    assert normalize("加Ⅴ").text == "加v"  # a Roman numeral five is the letter V here (NFKC)


def test_traditional_to_simplified_is_one_character_to_one() -> None:
    norm = normalize("髮財 後臺 發展下線")
    assert norm.text == "发财后台发展下线"
    assert len(norm.text) == len(norm.offsets)
    table = variants.t2s_table()
    assert table is variants.t2s_table()  # built once
    assert len(table) > 2000 and all(len(k) == 1 and len(v) == 1 for k, v in table.items())


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("+V", "加v"),
        ("请➕vx", "请加vx"),
        ("＋ 微信", "加微信"),
        ("1+v", "1v"),  # arithmetic, not "add"
        ("C++ vs Java", "cvsjava"),
        ("V❤", "v心"),
        ("加❤微❤信", "加微信"),  # hearts between the characters of 微信 are separators
        ("我爱你❤", "我爱你❤"),
        ("+86 138", "+86138"),
    ],
)
def test_plus_signs_and_hearts_read_as_characters_only_next_to_contact_words(text: str, normalised: str) -> None:
    assert normalize(text).text == normalised


def test_the_variant_tables_can_be_turned_off() -> None:
    plain = Normalizer(variants=False)
    assert plain.normalize("發展 一三八 +V").text == "發展一三八v"
    assert plain.normalize("好好好好好").text == "好好好"


def test_homophones_come_from_the_confusables_table() -> None:
    """The 微/信 homophones marketers use are listed as same-pinyin characters in zh-confusables."""
    path = CONFUSABLES / "same_pinyin.txt"
    if not path.exists():
        pytest.skip(f"{path} not available")
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            char, *rest = line.split("\t")
            rows[char] = "".join(rest)
    for first in variants.WECHAT_FIRST.replace("微", "").replace("徽", ""):  # 徽 looks like 微: a shape swap
        assert first in rows["微"], first
    for second in variants.WECHAT_SECOND.replace("信", ""):
        assert second in rows["信"], second


# --- precision: ordinary friend-feed posts -------------------------------------------------------------------

ORDINARY = [
    # family
    "今天和家人去公园散步，孩子第一次学会骑自行车",
    "爸妈结婚三十周年，我们一家人一起吃了顿饭",
    "老爸今天退休了，团队给他办了个欢送会",
    "表妹考上研究生了，全家都很开心🎉🎉🎉",
    "奶奶八十大寿，三四个亲戚从老家赶过来",
    "带孩子去动物园看企鹅和熊猫",
    "天冷了，记得把扣子扣好",
    # food cooked at home
    "妈妈做的红烧肉还是小时候的味道，怎么都复刻不出来",
    "周末自己在家包饺子，第一次做还挺成功",
    "买了3块蛋糕，一家人分着吃",
    "今天学着做了糖醋排骨，老公说比饭店的好吃",
    "冰箱里乱七八糟的，今天终于收拾干净了",
    # travel
    "这次去云南旅行，风景太美了，下次还想去",
    "明治维新以后日本变化很大，博物馆里讲得很清楚",
    "2024元旦快乐，新的一年一起加油",
    "周一三五去健身房，已经坚持一个月了",
    "在机场等了三个小时，终于登机了",
    "Saw the pyramids in Egypt, what a trip!",
    "Weekend hike with old friends, great views from the top",
    # work
    "终于把这周的报告写完了，加班到十点",
    "新同事很有威信，大家都听他的",
    "这样做能增加威信，也能增加大家的信任",
    "参加群众文艺活动，唱了一首老歌",
    "项目上线了，感谢团队每一个人的付出",
    "C++ vs Java，哪个更适合新手？",
    "今天是11月11日，公司放了半天假",
    "Back at work after the holidays, lots of email to answer",
    "Text me when you land, love you",
    # chatting about apps and numbers
    "我在微信上看到你发的照片了，真好看",
    "QQ音乐里这首歌单循环了一整天",
    "唯心主义和唯物主义的区别，老师讲了一节课",
    "车牌号尾号是8，今天限行",
    "跑步10公里，用时58分钟，配速5分48",
    "这个月电费花了三百多",
    "看了一下，这本书已经是第3版了",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_posts_hit_no_serious_category(builtin: Lexicon, text: str) -> None:
    hits = hits_of(builtin, text)
    assert [h for h in hits if h.category in SERIOUS] == []


def test_a_term_starting_with_jia_does_not_match_inside_another_word(builtin: Lexicon) -> None:
    assert [h for h in hits_of(builtin, "更加微妙的关系") if h.category == "contact"] == []
    assert [h for h in hits_of(builtin, "追加扣款") if h.category == "contact"] == []
    assert [h.text for h in hits_of(builtin, "你好，加威信聊") if h.category == "contact"] == ["加威信"]
    assert [h.text for h in hits_of(builtin, "添加微信：abc123") if h.term == "添加微信"] == ["添加微信"]


def test_a_bare_key_word_gets_no_spellings() -> None:
    lexicon = Lexicon.from_terms({"contact": ["微信", "加微信"]})
    assert lexicon.match("他很有威信") == []  # 微信 alone would have given 威信, an everyday word
    assert [h.term for h in lexicon.match("加威信")] == ["加微信"]
    assert Lexicon.from_terms({"contact": ["加微信"]}, aliases=False).match("加威信") == []


# --- evidence spans are exact under every step ---------------------------------------------------------------

_INSERTS = ["", " ", "\u200b", "*", "·", "🌹", "\ufe0f", "-"]
_FILLER = st.text(alphabet=st.sampled_from(list("今天天气很好我们一起去吃饭了，。！ abc123")), max_size=12)
_TERMS = ["加微信", "发展下线", "转发朋友圈送", "高仿", "集赞送", "qq号"]


def _dress(term: str, inserts: list[str], case: list[bool], wide: list[bool]) -> str:
    """The term with something between its characters, case swapped and full width here and there."""
    out = []
    for i, ch in enumerate(term):
        if case[i % len(case)]:
            ch = ch.upper()
        if wide[i % len(wide)] and "!" <= ch <= "~":
            ch = chr(ord(ch) + 0xFEE0)
        out.append(ch + (inserts[i % len(inserts)] if i < len(term) - 1 else ""))
    return "".join(out)


@settings(max_examples=150, deadline=None)
@given(
    before=_FILLER,
    after=_FILLER,
    term=st.sampled_from(_TERMS),
    inserts=st.lists(st.sampled_from(_INSERTS), min_size=1, max_size=4),
    case=st.lists(st.booleans(), min_size=1, max_size=3),
    wide=st.lists(st.booleans(), min_size=1, max_size=3),
)
def test_an_obfuscated_term_is_found_with_its_span_in_the_original(
    builtin: Lexicon, before: str, after: str, term: str, inserts: list[str], case: list[bool], wide: list[bool]
) -> None:
    dressed = _dress(term, inserts, case, wide)
    text = f"{before}，{dressed}，{after}"
    hits = hits_of(builtin, text)
    at = text.index(dressed)
    assert any(h.term == term and h.start == at and h.end == at + len(dressed) for h in hits), (text, hits)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("加微信薇威芯V❤+➕一二三壹①１8 \u200b*發線qQ扣企鹅号wx")), max_size=40))
def test_every_hit_and_entity_points_into_the_original(text: str) -> None:
    lexicon = Lexicon.from_dir(LISTS)
    hits, entities = analyse_text(text, lexicon)
    for item in [*hits, *entities]:
        assert 0 <= item.start < item.end <= len(text)
        assert text[item.start : item.end] == item.text
