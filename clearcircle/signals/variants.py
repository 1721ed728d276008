"""The variant tables behind the normaliser and the lexicon: what marketers swap in for a character or a word.

Two kinds of table, because the normaliser's offset map only survives one-character-to-one-character steps:

- **One character to one character** (used by `text_normalize.Normalizer`): traditional -> simplified (a
  char -> char table taken once from OpenCC), digit forms (①⑴❶➀⓵ and other scripts' digits -> ASCII, via
  `unicodedata.numeric`), CJK numerals (一二三 / 壹贰叁 / 〇零幺 -> ASCII, but only inside a run of numerals,
  see `CONTEXT_NUMERALS`), a plus sign before a contact word (+V, ➕V -> 加V) and a heart after V (V❤ -> V心,
  read "V xin" = 微信).
- **Many characters** (used by `lexicon.Lexicon` as extra spellings, "aliases", of a list term): the
  spellings of the key contact words (微信 -> 薇信, 威芯, vx, wx, weixin, V; qq -> 扣扣, 企鹅) and the pinyin
  of a term (加微信 -> jiaweixin; 发展下线 -> fzxx). They cannot be character maps: "wx" is two letters
  standing for a two-character word, and 企鹅 (penguin) is only QQ next to a contact cue. As aliases they
  keep the context of the list term they belong to: 威信 (prestige) alone is an ordinary word and matches
  nothing, 加威信 matches the term 加微信.

Provenance: the homophones are those of `zh-confusables/same_pinyin.txt` (pycorrector, Apache-2.0) that
marketers are seen to use; `tests/test_obfuscation_normaliser.py` checks each against that file when it is
present. The table is written out here rather than read at run time, so the service needs no data files.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Final

__all__ = [
    "CONTEXT_NUMERALS",
    "GUARDED_JIA_BEFORE",
    "HEARTS",
    "HEART_AFTER",
    "KEY_WORDS",
    "PLUS_BEFORE",
    "PLUS_SIGNS",
    "NUMERAL_RUN",
    "WECHAT_FIRST",
    "WECHAT_SECOND",
    "KeyWord",
    "digit_form",
    "key_word_aliases",
    "mixed_pinyin_aliases",
    "pinyin_aliases",
    "t2s_table",
]

# --- one character to one character (the normaliser) ----------------------------------------------------

# Blocks whose characters OpenCC may convert: CJK Unified Ideographs, Extension A, compatibility
# ideographs, Extension B. Converting each on its own line gives the single-character (default) reading.
_CJK_BLOCKS: Final = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF))


@cache
def t2s_table() -> dict[str, str]:
    """Traditional -> simplified for single characters, from OpenCC's t2s configuration, built once.

    OpenCC converts phrases (頭髮 -> 头发, 乾燥 -> 干燥) and is slow per call; one conversion of every CJK
    character, one a line, gives a plain table the normaliser folds into its `str.translate` cache, so a
    message costs nothing extra. Only pairs where both sides are one character are kept (all of them, in
    OpenCC 1.1), which keeps the offset map exact. Phrase-level choices (乾隆 stays 乾 in OpenCC's phrase
    mode, here it becomes 干) do not matter for matching: terms and texts are folded alike.
    """
    import opencc  # imported here: only the default normaliser needs it, and only once

    chars = [chr(c) for start, end in _CJK_BLOCKS for c in range(start, end + 1)]
    converted = opencc.OpenCC("t2s").convert("\n".join(chars)).split("\n")
    if len(converted) != len(chars):  # a conversion joined or split lines: fall back to per character
        converter = opencc.OpenCC("t2s")
        converted = [converter.convert(ch) for ch in chars]
    return {a: b for a, b in zip(chars, converted, strict=True) if a != b and len(b) == 1}


# Ideographic numerals with a single-digit value that are also everyday words in their own right:
# 参 (参加, take part), 參 (its traditional form), 漆 (paint), 兩 (两, "two" but also a weight unit).
_NUMERAL_WORDS: Final = frozenset("参參漆兩")


def _numeral_table() -> dict[str, str]:
    # 幺 (yao) is how 1 is read out in phone numbers (幺三八...); 〇 is the ideographic zero (二〇二四).
    out: dict[str, str] = {"幺": "1", "〇": "0"}
    for start, end in _CJK_BLOCKS:
        if start == 0xF900:  # compatibility ideographs: NFKC has already made them unified ones
            continue
        for c in range(start, end + 1):
            ch = chr(c)
            if ch in _NUMERAL_WORDS or unicodedata.category(ch) != "Lo":
                continue
            value = unicodedata.numeric(ch, None)
            if value is not None and value in range(10) and float(value).is_integer():
                out[ch] = str(int(value))
    return out


CONTEXT_NUMERALS: Final[dict[str, str]] = _numeral_table()
"""Ideographic numerals (一二三…九 〇 零 幺, 壹贰叁…玖 and their variants) -> ASCII digit.

一 is also the most common character in Chinese text (一起, 一下, 一样) and 三四, 七八, 三五 are everyday
approximations (三四个人, 乱七八糟), so these map only inside a run of at least `NUMERAL_RUN` numerals or
digits (after separators are removed): 一三八 一二三四 五六七八 is a phone number, 三四个人 stays text.
"""

NUMERAL_RUN: Final = 3


def digit_form(ch: str) -> str | None:
    """The ASCII digit a (folded) character always stands for, or None.

    Digits and numbers of every script with a single-digit value: ❶ ➀ ⓵ (dingbats NFKC leaves alone),
    ١ (Arabic-Indic), ๑ (Thai), 〡 (Suzhou). Not ideographic numerals (context matters, see
    `CONTEXT_NUMERALS`), not Roman numerals (NFKC already made them letters: Ⅴ -> V, which is what a
    marketer writing "加Ⅴ" means).
    """
    if ch.isascii() or ch in CONTEXT_NUMERALS or unicodedata.category(ch) not in ("Nd", "No", "Nl"):
        return None
    if unicodedata.name(ch, "").startswith("ROMAN NUMERAL"):
        return None
    value = unicodedata.numeric(ch, None)
    if value is None or value not in range(10) or not float(value).is_integer():
        return None
    return str(int(value))


PLUS_SIGNS: Final = frozenset("+＋﹢➕✚")
"""A plus sign read as 加 ("add") when it stands right before a contact word: +V, ➕vx, +qq, +微信."""

PLUS_BEFORE: Final = frozenset("vwq微薇威维徽扣企")
"""Folded characters that make a plus sign just before them a 加."""

HEARTS: Final = frozenset("❤♥♡❣💓💕💖💗💘💝💞💟🧡💛💚💙💜🖤🤍🤎")
"""A heart read as 心 (xin) right after V or a 微-like character: V❤ = V心 = 微信."""

HEART_AFTER: Final = frozenset("v微薇威维徽")

# --- many characters: aliases of list terms (the lexicon) -----------------------------------------------


@dataclass(frozen=True)
class KeyWord:
    """A key word of contact solicitation and the other spellings marketers write it with.

    `spellings` replace the key word inside a longer list term (加微信 -> 加威芯, 加vx, 加weixin): the rest of
    the term is the contact context. Alone, several spellings are everyday words -- 威信 (prestige), 维新
    (reform), 唯心 (idealism), 企鹅 (penguin) -- which is why a bare key word gets no spellings.
    """

    word: str
    spellings: tuple[str, ...]


# Homophones of 微 (wei) and 信 (xin) from same_pinyin.txt that marketers use, plus 徽 (looks like 微).
WECHAT_FIRST: Final = "微薇威维唯徽"
WECHAT_SECOND: Final = "信芯新心"
_WECHAT_ASCII: Final = ("v", "vx", "wx", "weixin", "wechat", "v信", "v芯", "v心", "微x", "薇x", "威x")

KEY_WORDS: Final = (
    KeyWord("微信", tuple(a + b for a in WECHAT_FIRST for b in WECHAT_SECOND if a + b != "微信") + _WECHAT_ASCII),
    KeyWord("qq", ("扣扣", "企鹅", "q")),
)

GUARDED_JIA_BEFORE: Final = frozenset("增参更追附施叠强倍横严外添")
"""Characters that, just before 加, make it part of another word: 增加 (raise), 参加 (take part), 更加
(more), 追加, 附加, 添加 ... A list term or alias that starts with 加 ("add") does not match after them:
增加威信 is "raise one's prestige", 参加群众活动 "take part in a community event", not 加威信 or 加群.
添加 does mean "add": a list says 添加微信 as a term of its own."""


def key_word_aliases(term: str) -> list[str]:
    """The normalised `term` with each key word inside it replaced by each of its other spellings.

    A term that IS the key word (a bare 微信 or qq) gets no aliases: the bare key word carries no context,
    and its spellings alone would turn ordinary words (威信, 企鹅) into contact words.
    """
    out: list[str] = []
    for key in KEY_WORDS:
        if key.word in term and term != key.word:
            out.extend(term.replace(key.word, spelling) for spelling in key.spellings)
    return out


# Words of four or more letters with no a, e, i, o, u -- the only way initials (which almost never hold a
# vowel) could spell an English word -- and the Chinese internet's own initialisms and emoticons (yyds,
# xswl, XDXD). Initials that spell one of these are not used.
_VOWELLESS_WORDS: Final = frozenset(
    "crwth crypt crypts glyph glyphs gypsy hymn hymns lymph lynch lynx myrrh myth myths nymph nymphs psst "
    "pfft rhythm rhythms shh shhh sync syncs synth synths tryst trysts wynd xyst hmmm brrr grrr tsktsk "
    "yyds xswl nsdd zqsg bhys xdxd hhhh kkkk xxxx ssfd djll srds yygq bdjw zfbz plzz thxx".split()
)


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


@cache
def pinyin_aliases(term: str) -> tuple[str, ...]:
    """Pinyin spellings of a normalised term: full pinyin (3+ characters) and initials (4+ characters).

    Why these lengths: two-character pinyin collides with other words and names (原单 yuandan = 元旦 New
    Year's Day, 私聊 siliao = 饲料 fodder, 加微 jiawei is a common given name); three syllables rarely do.
    Initials of fewer than four characters are ordinary abbreviations (gf, dg, jz), and initials that
    spell an English word are skipped. Digits stay as they are (转发3个群 -> zhuanfa3gequn). Terms with
    other characters (letters, symbols) get none: their ASCII part is matched as written.
    """
    from pypinyin import Style, lazy_pinyin  # imported here: only building a lexicon needs it

    cjk = sum(1 for ch in term if _is_cjk(ch))
    if cjk < 3 or not all(_is_cjk(ch) or ch.isdigit() for ch in term):
        return ()
    out = ["".join(lazy_pinyin(term))]
    if cjk >= 4:
        initials = "".join(lazy_pinyin(term, style=Style.FIRST_LETTER))
        if not any(v in initials for v in "aeiou") and initials not in _VOWELLESS_WORDS:
            out.append(initials)
    return tuple(a for a in out if a.isascii() and a.isalnum())


@cache
def mixed_pinyin_aliases(term: str) -> tuple[str, ...]:
    """A term with a key word, its context in pinyin and the key word in ASCII: 加微信 -> jiavx, jiawx, jiav.

    Cached, like `pinyin_aliases`: pypinyin is the slow part of building a lexicon, and a pack is loaded
    again on every reload with the same terms.
    """
    from pypinyin import lazy_pinyin

    out: list[str] = []
    for key in KEY_WORDS:
        if key.word not in term or term == key.word:
            continue
        head, _, tail = term.partition(key.word)
        if not all(_is_cjk(ch) for ch in head + tail):
            continue
        for spelling in (key.word if key.word.isascii() else "", *key.spellings):
            if spelling and spelling.isascii():
                out.append("".join(lazy_pinyin(head)) + spelling + "".join(lazy_pinyin(tail)))
    return tuple(out)
