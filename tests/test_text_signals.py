"""Text normaliser and keyword lexicon: exact offsets, obfuscation-proof matching, and the built-in lists."""

from __future__ import annotations

import functools
import unicodedata
from bisect import bisect_left
from pathlib import Path

import opencc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clearcircle
from clearcircle.events import parse_event
from clearcircle.signals.context import SignalContext, SignalValues
from clearcircle.signals.lexicon import Hit, Lexicon, LexiconError, read_term_file
from clearcircle.signals.registry import REGISTRY
from clearcircle.signals.text import texts_of  # noqa: F401  (registers the text signals)
from clearcircle.signals.text_normalize import Normalized, Normalizer, normalize
from clearcircle.signals.variants import CONTEXT_NUMERALS, HEARTS, PLUS_SIGNS

LISTS = Path(clearcircle.__file__).parent / "policy" / "packs" / "operating-norms" / "lists"
CATEGORIES = {
    "induced_share": "S2",
    "mlm": "S4",
    "counterfeit": "S5",
    "food": "S10",
    "contact": "S16",
    "sensitive": "S6",
    "commercial": "S16",
    "farm_produce": "S10",  # exempts primary farm produce from the food licence rule
}
OBFUSCATION = list("加微信Vvwx WXＷＸ..-_|/\\~·•,，。、！!:：\n\t\u3000") + [
    "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\ufe0f", "\u0336", "\u3164",
    "①", "㈠", "⒈", "Ⓐ", "ß", "İ", "ﬁ", "🌹", "😀", "好",
    "一", "三", "壹", "❶", "１", "〇", "幺", "+", "➕", "❤", "♥", "發", "線", "薇", "威", "芯", "q", "扣", "8",
]


@functools.cache
def _t2s(ch: str) -> str:
    return _OPENCC.convert(ch)


_OPENCC = opencc.OpenCC("t2s")


def reference_fold(ch: str) -> str:
    """The per-character fold the normaliser documents, written out independently of its code."""
    nf = unicodedata.normalize("NFKC", ch)
    if len(nf) != 1:
        core = [c for c in nf if unicodedata.category(c)[0] not in "PZ"]
        nf = core[0] if len(core) == 1 and unicodedata.category(core[0])[0] in "LN" else ch
    cf = nf.casefold()
    folded = cf if len(cf) == 1 else nf
    # digit forms of every script (❶ ➀ ١), but not Roman numerals and not ideographic ones (一, 壹: context)
    value = unicodedata.numeric(folded, None)
    if (not folded.isascii() and unicodedata.category(folded) in ("Nd", "No", "Nl") and value in range(10)
            and not unicodedata.name(folded, "").startswith("ROMAN") and folded not in CONTEXT_NUMERALS):
        return str(int(value))
    cjk = "\u3400" <= folded <= "\u9fff" or "\uf900" <= folded <= "\ufaff" or "\U00020000" <= folded <= "\U0002a6df"
    simplified = _t2s(folded) if cjk else folded
    return simplified if len(simplified) == 1 else folded


def is_invisible(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cf", "Mn", "Me") or ch in "\u115f\u1160\u3164\uffa0"


def is_word(ch: str) -> bool:
    cat = unicodedata.category(reference_fold(ch))
    return cat[0] in "LN" or cat == "Mc"


@pytest.fixture(scope="module")
def builtin() -> Lexicon:
    return Lexicon.from_dir(LISTS)


# --- normaliser -------------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.one_of(st.characters(), st.sampled_from(OBFUSCATION)), max_size=80))
def test_offsets_map_back_exactly(text: str) -> None:
    norm = normalize(text)
    assert norm.original == text
    assert len(norm.offsets) == len(norm.text)
    assert all(a < b for a, b in zip(norm.offsets, norm.offsets[1:], strict=False))
    for ch, at in zip(norm.text, norm.offsets, strict=True):
        source = text[at]
        folded = reference_fold(source)
        # The folded original character; the one space standing for a long separator run; a digit for an
        # ideographic numeral (in a run); 加 for a plus sign before a contact word; 心 for a heart after V.
        assert (
            ch == folded
            or (ch == " " and not is_word(source))
            or (ch.isdigit() and CONTEXT_NUMERALS.get(folded) == ch)
            or (ch == "加" and source in PLUS_SIGNS)
            or (ch == "心" and source in HEARTS)
        ), (ch, source)
    # No character but an ASCII digit survives more than three times in a row.
    assert all(len(set(norm.text[i : i + 4])) > 1 or norm.text[i].isdigit() for i in range(len(norm.text) - 3))
    # A word character is only ever dropped as a repeat of the last character kept before it.
    for i, ch in enumerate(text):
        if is_word(ch) and not is_invisible(ch) and i not in norm.offsets:
            before = bisect_left(norm.offsets, i) - 1
            assert before >= 0 and norm.text[before] == reference_fold(ch), (i, ch)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from([*" .-_|/~·•，。、！*", "\u200b", "\ufe0f", "🌹"]), max_size=3),
        min_size=2, max_size=2,
    )
)
def test_up_to_three_separators_inside_a_term_still_match(gaps: list[str]) -> None:
    text = f"请加{gaps[0]}微{gaps[1]}信"
    lexicon = Lexicon.from_terms({"contact": ["加微信"]})
    assert [h.text for h in lexicon.match(text)] == [text[1:]]


def test_span_maps_to_the_users_text() -> None:
    norm = normalize("请加 微\u200b信！")
    assert norm.text == "请加微信!"
    assert norm.span(1, 4) == (1, 6)
    assert norm.original_text(1, 4) == "加 微\u200b信"
    assert norm.span(2, 2) == (3, 3)
    assert norm.span(5, 5) == (7, 7)
    with pytest.raises(IndexError):
        norm.span(0, 9)


def test_folds_width_case_and_enclosed_digits() -> None:
    assert normalize("ＷＸ①Ⓐ").text == "wx1a"
    assert normalize("ＷＸ①㈠⒈Ⓐ").text == "wx111a"  # 1一1 is a run of three numerals: all digits
    assert normalize("㈠").text == "一"  # alone, 一 stays a character
    assert normalize("加Ｖ").text == "加v"
    assert Normalizer(variants=False).normalize("ＷＸ①㈠⒈Ⓐ").text == "wx1一1a"


def test_invisible_characters_are_dropped_everywhere() -> None:
    norm = normalize("\u200b加\u200c微\u00ad信\ufe0f\u2060")
    assert norm.text == "加微信"
    assert norm.offsets == (1, 3, 5)
    assert normalize("加\u0336微\u0336信").text == "加微信"  # strike-through overlay
    assert normalize("加\u3164微信").text == "加微信"  # Hangul filler, renders blank


def test_separators_beyond_the_bound_do_not_join_words() -> None:
    assert normalize("加...微信").text == "加微信"
    far = normalize("加....微信")
    assert far.text == "加 微信"
    assert far.offsets == (0, 1, 5, 6)
    assert normalize("第一段\n\n\n\n\n第二段").text == "第一段 第二段"
    lexicon = Lexicon.from_terms({"contact": ["加微信"]})
    assert lexicon.match("加 . - 微信") == []  # 5 separators
    assert [h.text for h in lexicon.match("加 . 微信")] == ["加 . 微信"]


def test_separators_at_the_ends_are_kept() -> None:
    assert normalize("  加微信!!").text == "  加微信!!"
    assert normalize("!?").text == "!?"
    assert normalize("").text == ""


def test_repeated_characters_collapse_to_three() -> None:
    norm = normalize("好好好好好好吃")
    assert norm.text == "好好好吃"
    assert norm.offsets == (0, 1, 2, 6)
    assert normalize("AAAA货").text == "aaa货"
    assert normalize("!!!!!!").text == "!!!"
    lexicon = Lexicon.from_terms({"counterfeit": ["aaa货"]})
    assert [h.text for h in lexicon.match("正品AAAAA货")] == ["AAAAA货"]  # the span covers the cut copies


def test_char_map_is_the_extension_point() -> None:
    homophones = Normalizer({"薇": "微", "威": "微"})
    assert homophones.normalize("加薇信").text == "加微信"
    lexicon = Lexicon.from_terms({"contact": ["加微信"]}, normalizer=homophones)
    assert [h.text for h in lexicon.match("加 威 信")] == ["加 威 信"]
    with pytest.raises(ValueError):
        Normalizer({"微": "weixin"})


# --- lexicon ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "term", "expected"),
    [
        ("请加\u200b微\u200b信", "加微信", "加\u200b微\u200b信"),
        ("请加 微 信详聊", "加微信", "加 微 信"),
        ("有需要加-V", "加v", "加-V"),
        ("我的ＷＸ是abc", "wx", "ＷＸ"),
        ("my wechat: W.X", "wx", "W.X"),
        ("加🌹微🌹信", "加微信", "加🌹微🌹信"),
    ],
)
def test_obfuscated_terms_match_with_the_original_text(text: str, term: str, expected: str) -> None:
    lexicon = Lexicon.from_terms({"contact": ["加微信", "加v", "wx"]})
    hits = [h for h in lexicon.match(text) if h.term == term]
    assert len(hits) == 1
    hit = hits[0]
    assert hit.text == expected
    assert text[hit.start : hit.end] == expected


def test_ascii_terms_match_on_word_boundaries_only() -> None:
    lexicon = Lexicon.from_terms({"contact": ["wx", "qq"], "mlm": ["downline"], "counterfeit": ["1:1复刻"]})
    assert lexicon.match("twxy") == []
    assert lexicon.match("new xbox") == []  # "newxbox" once spaces go, but w and x were different words
    assert lexicon.match("downlines") == []
    assert [h.text for h in lexicon.match("add my wx: abc123")] == ["wx"]
    assert [h.text for h in lexicon.match("加wx")] == ["wx"]
    assert [h.text for h in lexicon.match("qq123456")] == ["qq"]  # a digit does not extend a letter word
    assert [h.text for h in lexicon.match("Build your DOWN-LINE")] == ["DOWN-LINE"]
    assert [h.text for h in lexicon.match("1：1复刻")] == ["1：1复刻"]
    assert lexicon.match("21:1复刻") == []  # a digit edge must not touch another digit


def test_cjk_terms_match_anywhere() -> None:
    lexicon = Lexicon.from_terms({"counterfeit": ["高仿"]})
    assert [h.text for h in lexicon.match("abc高仿xyz")] == ["高仿"]


def test_overlapping_hits_sorted_and_reported_once() -> None:
    lexicon = Lexicon.from_terms({"contact": ["加微信", "微信", "微 信", "WeiXin"], "commercial": ["微信"]})
    hits = lexicon.match("加微信")
    assert hits == [
        Hit("contact", "加微信", 0, 3, "加微信"),
        Hit("commercial", "微信", 1, 3, "微信"),
        Hit("contact", "微信", 1, 3, "微信"),
    ]
    assert lexicon.categories == frozenset({"contact", "commercial"})
    assert len(lexicon) == 4  # "微 信" is the same term as "微信"


def test_match_accepts_a_normalized_text() -> None:
    lexicon = Lexicon.from_terms({"contact": ["加微信"]})
    norm = normalize("加 微 信")
    assert isinstance(norm, Normalized)
    assert lexicon.match(norm) == lexicon.match("加 微 信")


def test_empty_lexicon_matches_nothing() -> None:
    assert Lexicon.from_terms({}).match("加微信") == []
    assert Lexicon.from_terms({"x": ["加微信"]}).match("") == []


def test_from_dir_names_file_and_line_of_a_bad_term(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("# fine\n加微信\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_text("# header\n高仿\n - . - \n", encoding="utf-8")
    with pytest.raises(LexiconError) as err:
        Lexicon.from_dir(tmp_path)
    assert f"{tmp_path / 'bad.txt'}:3:" in str(err.value)
    assert err.value.line == 3
    (tmp_path / "bad.txt").write_text("高仿\n\n" + "长" * 65 + "\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"bad\.txt:3: .*longer than 64"):
        Lexicon.from_dir(tmp_path)


def test_from_dir_reads_comments_blank_lines_and_bom(tmp_path: Path) -> None:
    content = "\ufeff# contact\n\n加微信  # trailing note\n  wx  \n"
    (tmp_path / "contact.txt").write_text(content, encoding="utf-8")
    lexicon = Lexicon.from_dir(tmp_path)
    assert lexicon.categories == {"contact"}
    assert len(lexicon) == 2
    with pytest.raises(LexiconError, match="not a directory"):
        Lexicon.from_dir(tmp_path / "missing")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(LexiconError, match=r"latin1\.txt: not UTF-8"):
        Lexicon.from_dir(tmp_path)


def test_from_terms_error_names_the_category() -> None:
    with pytest.raises(LexiconError, match="category 'mlm'.*empty"):
        Lexicon.from_terms({"mlm": ["招代理", "   "]})
    with pytest.raises(LexiconError, match="not one string"):
        Lexicon.from_terms({"contact": "加微信"})


# --- built-in lists ---------------------------------------------------------------------------------------


def test_builtin_lists_are_all_there(builtin: Lexicon) -> None:
    assert builtin.categories >= set(CATEGORIES)  # other lists (farm_produce) may sit beside them


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_builtin_list_loads_cites_spec_and_has_no_duplicates(builtin: Lexicon, category: str) -> None:
    path = LISTS / f"{category}.txt"
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith(f"# {category}")
    assert CATEGORIES[category] in path.read_text(encoding="utf-8").split("\n\n")[0]
    terms = read_term_file(path)
    assert 30 <= len(terms) <= 250
    seen: dict[str, int] = {}
    for line, term in terms:
        key = builtin.normalize_term(term, source=str(path), line=line)
        assert key not in seen, f"{path.name}:{line}: {term!r} duplicates line {seen[key]}"
        seen[key] = line
    assert any(t.isascii() for _, t in terms) and any(not t.isascii() for _, t in terms)


@pytest.mark.parametrize(
    "text",
    [
        "今天和家人去公园玩，天气真好",
        "周末带孩子去图书馆看书，回来路上吃了碗牛肉面",
        "刚跑完10公里，累但是很开心！",
        "妈妈做的红烧肉还是小时候的味道，怎么都复刻不出来",
        "恭喜表妹考上研究生🎉🎉🎉🎉",
        "晚上和老同学聚会，聊了很多大学时候的事",
        "看到大家朋友圈都在晒年夜饭，我也来一张",
        "这张照片拍得太好了，给你点个赞！",
        "今天是11月11日，我们一家去爬山了",
        "老爸今天退休了，团队给他办了个欢送会",
        "Had a lovely dinner with my parents tonight.",
        "Saw the pyramids in Egypt, what a trip!",
    ],
)
def test_ordinary_friend_feed_posts_do_not_hit_the_serious_categories(builtin: Lexicon, text: str) -> None:
    hits = builtin.match(text)
    assert [h for h in hits if h.category in {"induced_share", "mlm", "counterfeit"}] == []


def test_builtin_lists_catch_typical_marketing(builtin: Lexicon) -> None:
    post = "转发朋友圈集满38个赞，截图发客服领取！诚招代理，零成本创业，发展下线躺赚。高仿大牌1:1复刻，加V"
    found = {h.category for h in builtin.match(post)}
    assert {"induced_share", "mlm", "counterfeit", "contact"} <= found


# --- speed ------------------------------------------------------------------------------------------------

POST_200 = (
    "今天终于忙完了，晚上和家人一起吃了火锅，孩子们玩得很开心😄。周末打算去郊外爬山，天气预报说是晴天。"
    "顺便分享一下：新品上市！！！全国包邮，原价199现价99，限时秒杀，手慢无～ 需要的朋友加 微 信 abc_123，"
    "转发朋友圈集满30个赞送精美礼品一份，截图发客服领取。诚招代理，零成本创业，宝妈在家也能月入过万。"
    "另有日本代购、海外直邮，支持专柜验货。Share to Moments to unlock the full price list!"
)[:200]


def test_benchmark_match_200_char_post(benchmark, builtin: Lexicon) -> None:
    assert len(POST_200) == 200
    hits = benchmark(builtin.match, POST_200)
    assert {"induced_share", "mlm", "counterfeit", "contact", "commercial"} <= {h.category for h in hits}


def test_benchmark_normalize_200_char_post(benchmark) -> None:
    norm = benchmark(normalize, POST_200)
    assert len(norm.text) == len(norm.offsets)


# --- text signals over an event (links and landing pages: issue 3, point 7) ---------------------------------


def _ctx(lexicon: Lexicon, **body: object) -> SignalContext:
    event = parse_event({"id": "ts-1", "type": "post_created", "occurred_at": "2026-03-02T09:00:00+08:00",
                         "actor": "u-1", "body": {"surface": "moments", **body}})
    return SignalContext(event, 0, counters=None, lookups=None, resources={"lexicon": lexicon})  # type: ignore[arg-type]


def test_share_to_unlock_on_a_landing_page_is_induced_sharing(builtin: Lexicon) -> None:
    landing = "活动规则：分 享 到 朋 友 圈 解 锁 全部内容，集赞 38 个截图发客服领取奖品"
    ctx = _ctx(builtin, text="这个活动挺有意思", links=[{"url": "https://example.com/a", "landing_text": landing},
                                                   {"url": "https://example.com/b", "landing_text": "活动说明"}])
    values = SignalValues(REGISTRY, ctx)
    assert "induced_share" in values["text.categories"]
    share = [e for e in values["text.evidence"] if e["category"] == "induced_share"]
    assert share and {e["field"] for e in share} == {"body.links.0.landing_text"}
    for item in share:
        a, b = item["span"]
        assert landing[a:b] == item["text"]
    assert "分 享 到 朋 友 圈 解 锁" in [e["text"] for e in share]  # shown as written, spaces and all
    # the post's own text is calm: nothing points into it
    assert all(e["field"] != "body.text" for e in values["text.evidence"])


def test_landing_page_in_traditional_characters_and_pinyin(builtin: Lexicon) -> None:
    ctx = _ctx(builtin, text="看看", links=[{"url": "https://example.com/x",
                                             "landing_text": "轉發到朋友圈即可領取，fen xiang hou cha kan"}])
    values = SignalValues(REGISTRY, ctx)
    found = {(e["term"], e["text"]) for e in values["text.evidence"] if e["category"] == "induced_share"}
    assert ("转发到朋友圈即可", "轉發到朋友圈即可") in found
    assert ("分享后查看", "fen xiang hou cha kan") in found


def test_a_url_in_post_text_is_an_entity(builtin: Lexicon) -> None:
    text = "周末去了这家店，链接在这：https://t.cn/A6abCD9 还有 www.example.com/menu"
    values = SignalValues(REGISTRY, _ctx(builtin, text=text))
    assert values["text.entities"] == ["url", "short_link"]
    assert values["text.contacts"] == 0 and values["text.has_price"] is False
    assert "contact" not in values["text.categories"]  # a link alone is not contact solicitation
