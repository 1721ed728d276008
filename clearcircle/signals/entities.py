"""Entities in text: phone numbers, WeChat IDs, QQ numbers, e-mail addresses, URLs and short links, prices.

Why: the last step of marketing to strangers is moving them to a private channel -- a phone number, a
WeChat ID, a QQ number, a short link -- and a price is what makes a post a sale. Keywords say "add me";
entities say where to. Contact entities (phone, WeChat, QQ) count as the `contact` category of the text
signals, so a post with 一三八 一二三四 五六七八 and no contact word is still contact solicitation.

How: numbers and IDs are looked for in the NORMALISED text (`text_normalize`), so the obfuscations the
normaliser sees through (full-width ＱＱ, 壹叁捌 and ① digits, zero-width and symbols between digits,
traditional characters) hide nothing; URLs, e-mail addresses and prices need their punctuation, so they are
looked for in the normaliser's same-length folded view (`Normalizer.view`). Every `Entity` carries its span
in the ORIGINAL text, as the user wrote it, for evidence.

Separators are ambiguous in a number: 138 1234 5678 is one phone number, "2人 13812345678" and "99 138..."
are two numbers. So digits are split into groups where the user put a separator, and a phone number is a
run of whole consecutive groups with the right length and prefix: 138-1234-5678 (groups 3+4+4), +86 138
1234 5678, 1 3 8 1 2 3 4 5 6 7 8, but never 11 digits cut out of an 18-digit ID card or order number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import ahocorasick_rs

from clearcircle.signals import variants
from clearcircle.signals.text_normalize import DEFAULT_NORMALIZER, SEP, Normalized, Normalizer

__all__ = ["CONTACT_KINDS", "KINDS", "SHORT_LINK_HOSTS", "Entity", "extract"]

KINDS: Final = ("phone", "wechat", "qq", "email", "url", "short_link", "price")
CONTACT_KINDS: Final = frozenset({"phone", "wechat", "qq"})

SHORT_LINK_HOSTS: Final = frozenset(
    "t.cn url.cn w.url.cn dwz.cn suo.im mrw.so 985.so tb.cn m.tb.cn e.tb.cn u.jd.com 3.cn s.click.taobao.com "
    "bit.ly goo.gl tinyurl.com t.co ow.ly is.gd buff.ly rebrand.ly cutt.ly shorturl.at tiny.cc rb.gy "
    "v.gd j.mp lnkd.in t.ly s.id".split()
)
"""Link shorteners: the link hides where it goes, a common way round URL blocklists."""


@dataclass(frozen=True)
class Entity:
    """One entity; `start`/`end`/`text` are in the original text, as the user wrote it.

    `value` is a canonical form for counting and look-ups: a phone's digits (without +86), a WeChat ID or
    QQ number as normalised, an e-mail or URL as written, a price as "99 CNY".
    """

    kind: str
    value: str
    start: int
    end: int
    text: str


# --- in the normalised text: phones, QQ numbers, WeChat IDs ----------------------------------------------

_DIGIT_RUN: Final = re.compile(r"[0-9]{10,}")
_DIGITS: Final = re.compile(r"[0-9]+")
_MOBILE: Final = re.compile(r"1[3-9][0-9]{9}")
_HOTLINE: Final = re.compile(r"[48]00[0-9]{7}")
_LANDLINE: Final = re.compile(r"0[1-9][0-9]{8,10}")

_QQ_MARKER: Final = re.compile(r"(qq|扣扣|企鹅|q)(?:号码|群号|号|群)?(?:是|为)?(?=[1-9])")
_WECHAT_SPELLINGS: Final = sorted(
    {"微信", "加微", "wxid", *next(k for k in variants.KEY_WORDS if k.word == "微信").spellings}, key=len, reverse=True
)
# Markers are found with one Aho-Corasick pass (a regex alternation of 40 spellings is tried at every
# position, ten times slower); what may follow a marker is then checked with an anchored regex.
_WECHAT_MARKERS: Final = ahocorasick_rs.AhoCorasick(_WECHAT_SPELLINGS)
_AFTER_WECHAT_MARKER: Final = re.compile(r"(号码|号|id)?(是|为)?(?=[a-z])")
_ID_CHARS: Final = re.compile(r"[a-z0-9]+")
_QQ_DIGITS: Final = re.compile(r"[0-9]{5}")
_ID_CUES: Final = frozenset(":：号是为=")
_ID_JOINERS: Final = frozenset("_-")
_NUMBER_JOINERS: Final = frozenset(".,")


def _is_letter(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


class _Finder:
    """One text's extraction: the normalised text, its original, the view, and the spans already claimed."""

    def __init__(self, norm: Normalized, normalizer: Normalizer) -> None:
        self.norm = norm
        self.normalizer = normalizer
        self.claimed: list[tuple[int, int]] = []
        self.found: list[Entity] = []

    # helpers over the normalised text

    def broken(self, i: int) -> bool:
        """Whether the user put a separator between normalised characters i-1 and i (a word boundary)."""
        offsets = self.norm.offsets
        a, b = offsets[i - 1] + 1, offsets[i]
        return b > a and self.normalizer.has_separator(self.norm.original[a:b])

    def glued_letter_before(self, i: int) -> bool:
        """An ASCII letter just before normalised position i with no separator between: inside a word."""
        return i > 0 and _is_letter(self.norm.text[i - 1]) and not self.broken(i)

    def gap(self, i: int) -> str:
        """The original characters removed between normalised characters i-1 and i."""
        offsets = self.norm.offsets
        return self.norm.original[offsets[i - 1] + 1 : offsets[i]]

    def contiguous(self, start: int, end: int) -> bool:
        """Whether normalised [start, end) came from consecutive original characters (nothing removed)."""
        offsets = self.norm.offsets
        return offsets[end - 1] - offsets[start] == end - 1 - start

    def free(self, a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e in self.claimed)

    def add(self, kind: str, value: str, start: int, end: int, *, normalised: bool = True) -> None:
        """Record an entity over normalised [start, end) (or original [start, end) if not `normalised`)."""
        a, b = self.norm.span(start, end) if normalised else (start, end)
        if not self.free(a, b):
            return
        self.claimed.append((a, b))
        self.found.append(Entity(kind, value, a, b, self.norm.original[a:b]))

    # the extractors

    def groups(self, start: int, end: int) -> list[tuple[int, int]]:
        """Split the digit run [start, end) of the normalised text where the user put separators.

        A lone "." or "," between digits joins them (3.14159265358 and 1,299 are one number each).
        """
        if self.contiguous(start, end):  # written in one piece: the common case, no per-digit look
            return [(start, end)]
        out, first = [], start
        for i in range(start + 1, end):
            if self.broken(i) and self.normalizer.view(self.gap(i)) not in _NUMBER_JOINERS:
                out.append((first, i))
                first = i
        out.append((first, end))
        return out

    def qq_numbers(self) -> None:
        text = self.norm.text
        for m in _QQ_MARKER.finditer(text):
            marker = m.group(1)
            if marker.isascii() and self.glued_letter_before(m.start()):
                continue  # "faq 12345", "bbq123456"
            run = _DIGITS.match(text, m.end())
            assert run is not None
            groups = self.groups(m.end(), run.end())
            if marker == "q" and groups[0][1] - groups[0][0] < 5:
                continue  # a bare Q needs the number in one piece: "Q3 2024" is a quarter, not a QQ
            end = m.end()
            for _, b in groups:
                if b - m.end() > 11:
                    break
                end = b
            if 5 <= end - m.end() <= 11:
                self.add("qq", text[m.end() : end], m.end(), end)

    def wechat_ids(self) -> None:
        text = self.norm.text
        found = _WECHAT_MARKERS.find_matches_as_indexes(text, overlapping=True)
        if len(found) > 1:  # at one place, the longest marker first: wxid before wx
            found.sort(key=lambda f: (f[1], f[1] - f[2]))
        for index, marker_start, marker_end in found:
            m = _AFTER_WECHAT_MARKER.match(text, marker_end)
            if m is None:
                continue
            marker = _WECHAT_SPELLINGS[index]
            cued = m.group(1) is not None or m.group(2) is not None
            start = m.end()
            if marker.isascii() and marker != "wxid" and self.glued_letter_before(marker_start):
                continue  # "vivid", "twx": the marker is part of a word
            if marker == "wxid":
                start = marker_start  # a default WeChat ID: wxid_ is part of it
            elif marker[-1].isascii() and not cued and not self.broken(start):
                continue  # "vxabc123": too easily an ordinary word; a real ID follows a separator or 号/是
            run = _ID_CHARS.match(text, start if marker == "wxid" else m.end())
            assert run is not None
            if self.contiguous(start, run.end()):
                end = run.end()
            else:
                end = start + 1
                while end < run.end() and end - start <= 20 and not self._id_break(end):
                    end += 1
            if not 6 <= end - start <= 20:
                continue  # too short, or a run of 21+ characters: not an ID
            value = text[start:end]
            if not any(ch.isdigit() for ch in value) and not (cued or self._id_cue(marker, start, end)):
                continue  # "my wechat please": a plain word after the marker needs ":" or 号 to be an ID
            self.add("wechat", value, start, end)

    def _id_break(self, i: int) -> bool:
        """A separator other than _ and - between ID characters i-1 and i ends the ID."""
        gap = self.gap(i)
        return any(ch not in _ID_JOINERS and self.normalizer.char_kind(ch) == SEP for ch in gap)

    def _id_cue(self, marker: str, start: int, end: int) -> bool:
        """Whether a letters-only ID is marked as one: after a CJK marker, a colon, or written with _ or -."""
        if not marker.isascii() or marker == "wxid":
            return True
        between = self.gap(start) if start > 0 else ""
        return any(ch in _ID_CUES for ch in between) or any(ch in _ID_JOINERS for ch in self._joined(start, end))

    def _joined(self, start: int, end: int) -> str:
        offsets = self.norm.offsets
        return self.norm.original[offsets[start] : offsets[end - 1] + 1]

    def phones(self) -> None:
        text = self.norm.text
        for m in _DIGIT_RUN.finditer(text):
            groups = self.groups(m.start(), m.end())
            i = 0
            while i < len(groups):
                best: tuple[int, str] | None = None
                for j in range(i, len(groups)):
                    a, b = groups[i][0], groups[j][1]
                    if b - a > 13:
                        break
                    digits = text[a:b]
                    if len(digits) == 11 and _MOBILE.fullmatch(digits):
                        best = (j, digits)
                    elif len(digits) == 13 and digits.startswith("86") and _MOBILE.fullmatch(digits[2:]):
                        best = (j, digits[2:])
                    elif len(digits) == 10 and _HOTLINE.fullmatch(digits):
                        best = (j, digits)
                    elif 10 <= len(digits) <= 12 and _LANDLINE.fullmatch(digits) and (
                        j == i or (groups[i][1] - groups[i][0] in (3, 4) and 7 <= b - groups[i][1] <= 8)
                    ):
                        best = (j, digits)
                if best is None:
                    i += 1
                    continue
                j, value = best
                self.add("phone", value, groups[i][0], groups[j][1])
                i = j + 1


# --- in the folded view: e-mail, URLs, prices ------------------------------------------------------------

_TLDS: Final = (
    "com|net|org|cn|io|me|cc|co|info|biz|top|xyz|vip|shop|site|online|club|app|ly|gl|gd|im|so|link|live|pro|"
    "tv|hk|tw|jp|kr|asia|wang|ink|ren|fun|store|tech|icu|mobi|work|red|ltd|group|at|id|in"
)
_EMAIL: Final = re.compile(r"(?<![a-z0-9._%+-])[a-z0-9._%+-]+@(?:[a-z0-9-]+\.)+[a-z]{2,}(?![a-z0-9-])")
# Characters a URL in running text does not contain: spaces, brackets, quotes, CJK and CJK punctuation,
# and the ASCII comma and exclamation mark that full-width ，！ fold to.
_URL_STOP: Final = r"\s<>\"'()（）【】「」《》，。！？、；,!\u3000-\u303f\u3400-\u9fff\uff00-\uffef"
_SCHEME_URL: Final = re.compile(rf"(?:https?://|www\.)[^{_URL_STOP}]+")
# A bare domain (t.cn/abc, example.com) is found from its top-level domain: a literal "." the regex engine
# scans for quickly, rather than a host pattern tried at every position.
_TLD: Final = re.compile(rf"\.(?:{_TLDS})(?![a-z0-9-])")
_HOST: Final = re.compile(rf"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:{_TLDS})")
_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_PATH: Final = re.compile(rf"[/?#][^{_URL_STOP}]*")
_URL_TRAILING: Final = ".,;:!?'\")]}>"

_NUMBER: Final = re.compile(r"[0-9]+(?:[.,][0-9]+)*")
_PREFIXES: Final = (("us$", "USD"), ("hk$", "HKD"), ("¥", "CNY"), ("$", "USD"), ("€", "EUR"), ("£", "GBP"),
                    ("rmb", "CNY"), ("cny", "CNY"), ("usd", "USD"), ("hkd", "HKD"), ("eur", "EUR"))
_SUFFIXES: Final = (("块钱", "CNY"), ("美元", "USD"), ("美金", "USD"), ("港币", "HKD"), ("欧元", "EUR"),
                    ("英镑", "GBP"), ("元", "CNY"), ("块", "CNY"), ("rmb", "CNY"), ("cny", "CNY"), ("usd", "USD"),
                    ("hkd", "HKD"), ("eur", "EUR"), ("dollars", "USD"), ("dollar", "USD"), ("bucks", "USD"))
_PREFIX_ENDS: Final = frozenset(p[-1] for p, _ in _PREFIXES)
_SUFFIX_STARTS: Final = frozenset(p[0] for p, _ in _SUFFIXES)
# 元 in 元旦 (New Year's Day), 元宵, 元素, 元年 ...: 2024元旦 is a date, not a price.
_NOT_YUAN: Final = frozenset("旦宵素老气首帅年月")
# 块 is also a measure word (3块蛋糕, three pieces of cake): a price only before these or a non-CJK character.
_YUAN_KUAI_NEXT: Final = ("包邮", "起", "一", "每", "钱")


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff"


def _urls(finder: _Finder, view: str, original: str) -> None:
    for m in _SCHEME_URL.finditer(view):
        _add_url(finder, original, m.start(), m.start() + len(m.group().rstrip(_URL_TRAILING)))
    done = -1
    for m in _TLD.finditer(view):
        if m.start() < done:
            continue  # a later label of a host already looked at (example.com.cn)
        a, b = m.start(), m.end()
        while a > 0 and view[a - 1] in _HOST_CHARS:
            a -= 1
        while b < len(view) and view[b] in _HOST_CHARS:
            b += 1
        done = b
        if a > 0 and view[a - 1] in "@_":
            continue  # an e-mail address or an ID, not a host
        host = _HOST.match(view, a, b)
        if host is None:
            continue
        end = host.end()
        path = _PATH.match(view, end)
        if path is not None:
            end = path.start() + len(path.group().rstrip(_URL_TRAILING))
        _add_url(finder, original, host.start(), end)


def _add_url(finder: _Finder, original: str, start: int, end: int) -> None:
    url = original[start:end]
    host = finder.normalizer.view(url).split("://", 1)[-1]
    for stop in "/?#":
        host = host.split(stop, 1)[0]
    kind = "short_link" if host in SHORT_LINK_HOSTS else "url"
    finder.add(kind, url, start, end, normalised=False)


# prices without a currency sign: a unit price (25/斤, 30每盒) or yuan in Chinese numerals (十元, 两百元)
_UNIT_PRICE: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?\s*(?:/|一|每)\s*(?:斤|公斤|千克|kg|盒|箱|袋|瓶|份|只|个|罐)",
                                re.IGNORECASE)
_NUMERAL_YUAN: Final = re.compile(r"[一二两三四五六七八九十百千万]+元")


def _unit_and_numeral_prices(finder: _Finder, view: str) -> None:
    for m in _UNIT_PRICE.finditer(view):
        finder.add("price", m.group().replace(" ", "") + " CNY/unit", m.start(), m.end(), normalised=False)
    for m in _NUMERAL_YUAN.finditer(view):
        if view[m.end() : m.end() + 1] not in _NOT_YUAN:
            finder.add("price", m.group() + " CNY", m.start(), m.end(), normalised=False)


def _prices(finder: _Finder, view: str) -> None:
    """A number with a currency before it (¥99, $5, RMB 99) or after it (99元, 99块钱, 5 dollars)."""
    _unit_and_numeral_prices(finder, view)
    for m in _NUMBER.finditer(view):
        start, end = m.span()
        currency = None
        at = start - 1 if view[start - 1 : start] == " " else start  # one space allowed: ¥ 99, 99 元
        for prefix, code in _PREFIXES if view[at - 1 : at] in _PREFIX_ENDS else ():
            begin = at - len(prefix)
            if begin >= 0 and view.startswith(prefix, begin):
                if prefix.isalpha() and begin > 0 and view[begin - 1].isalpha():
                    continue  # "abcusd 5"
                start, currency = begin, code
                break
        if currency is None:
            at = end + 1 if view[end : end + 1] == " " else end
            for suffix, code in _SUFFIXES if view[at : at + 1] in _SUFFIX_STARTS else ():
                if not view.startswith(suffix, at):
                    continue
                following = view[at + len(suffix) : at + len(suffix) + 2]
                if suffix == "元" and following[:1] in _NOT_YUAN:
                    break
                if (suffix == "块" and following and _is_cjk(following[0])
                        and not following.startswith(_YUAN_KUAI_NEXT)):
                    break
                if suffix.isascii() and following[:1].isalpha():
                    break
                end, currency = at + len(suffix), code
                break
        if currency is not None:
            finder.add("price", f"{m.group().replace(',', '')} {currency}", start, end, normalised=False)


def _view_entities(finder: _Finder) -> None:
    """E-mail addresses, URLs and prices, over the folded view of the original text (same offsets)."""
    original = finder.norm.original
    dotted = "." in original or "．" in original
    at = "@" in original or "＠" in original
    digits = _HAS_DIGIT.search(finder.norm.text) is not None
    if not (dotted or at or digits):
        return
    view = finder.normalizer.view(original)
    if at:
        for m in _EMAIL.finditer(view):
            finder.add("email", original[m.start() : m.end()], m.start(), m.end(), normalised=False)
    if dotted:
        _urls(finder, view, original)
    if digits:
        _prices(finder, view)


_HAS_DIGIT: Final = re.compile(r"[0-9]")


def extract(text: str | Normalized, normalizer: Normalizer = DEFAULT_NORMALIZER) -> list[Entity]:
    """Every entity in `text`, sorted by start; spans in the original text.

    Pass a `Normalized` made by `normalizer` to share one normalisation with the lexicon. Links and e-mail
    addresses are found first and claim their span, so the digits of a link are not a phone number; then QQ
    numbers and WeChat IDs (they need a marker before them), then phone numbers.
    """
    norm = text if isinstance(text, Normalized) else normalizer.normalize(text)
    if not norm.text:
        return []
    finder = _Finder(norm, normalizer)
    _view_entities(finder)
    numbers = _QQ_DIGITS.search(norm.text) is not None  # most texts hold no run of 5+ digits
    if numbers:
        finder.qq_numbers()
    finder.wechat_ids()
    if numbers:
        finder.phones()
    finder.found.sort(key=lambda e: (e.start, e.end, e.kind))
    return finder.found


def kinds(entities: list[Entity]) -> Iterator[str]:
    """The kinds present, in `KINDS` order."""
    present = {e.kind for e in entities}
    return (kind for kind in KINDS if kind in present)
