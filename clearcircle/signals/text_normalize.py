"""Text normalisation for keyword matching that keeps an exact map back to what the user wrote.

Spammers dodge keyword lists by writing 加​微​信 (zero-width spaces), 加 微 信, 加-V, ＷＸ (full width), 加V,
加薇信, 發展下線 (traditional), 一三八一二三四五六七八 or 好好好好好好. `normalize` folds those variants onto one
canonical form so a lexicon term written once (``加微信``, ``wx``) matches all of them, and records for every
normalised character the index of the original character it came from: evidence shown to moderators and
regulators is then always the user's own text (`Normalized.span`), never our rewrite of it. It is the one
normaliser every text signal uses (lexicon, entities, the classifier's features).

The invariant that makes the offset map exact: every step maps ONE original character to ZERO or ONE
output character, and the kept characters stay in order (``offsets`` is strictly increasing). The steps:

1. Fold each character: NFKC when the result is a single character (full width -> half width, ① -> 1,
   ｶ -> カ); when NFKC gives several characters that are one letter or digit plus punctuation or spaces
   (㈠ -> "(一)", ⒈ -> "1."), that letter or digit; then case folding when it gives a single character.
   With the standard variant tables (`variants=True`, the default; see `variants.py`): digit forms NFKC
   leaves alone become ASCII digits (❶ ➀ ⓵ ١ -> 1), and traditional characters become simplified ones
   (OpenCC, single characters: 發 -> 发, 線 -> 线). `Normalizer.char_map` (empty by default) is applied
   last: the extension point for further one-character tables.
2. Contact cues written with symbols (standard tables only): a plus sign right before a contact word
   becomes 加 (+V, ➕vx -> 加v, 加vx), a heart right after V or 微 becomes 心 (V❤ -> v心, "V xin", WeChat).
   Everywhere else these symbols stay separators.
3. Drop invisible characters everywhere: format characters (category Cf: U+200B..U+200F, U+2060..U+2064,
   U+FEFF, U+00AD, bidi controls, tag characters), non-spacing and enclosing marks (Mn/Me: variation
   selectors, strike-through overlays like 加̶微̶信, keycap marks) and the Hangul fillers (U+115F, U+1160,
   U+3164, U+FFA0) that render as blanks.
4. Separators (everything that is neither a word character -- letter, digit, spacing mark -- nor dropped:
   whitespace, punctuation, symbols, emoji) that stand between two word characters are removed when the
   run has at most `max_gap` (3) of them, and replaced by ONE space (mapped to the run's first separator)
   when it is longer, so words far apart never join. Separators at the start or end of the text are kept.
5. Ideographic numerals (一二三, 壹贰叁, 〇零幺; standard tables only) become ASCII digits inside a run of at
   least three numerals or digits, counted after step 4: 一三八 一二三四 五六七八 -> 13812345678, 1三8 -> 138,
   while 一起, 三四个人 and 乱七八糟 keep their characters. 一 is the commonest character in Chinese text and
   two-numeral runs are everyday approximations; no phone, QQ number or price worth finding is that short.
6. A character repeated more than `max_repeat` (3) times in a row is cut to `max_repeat` copies, except
   ASCII digits: 13888888888 and QQ 88888888 are numbers, not emphasis.

Steps that need one-to-many output (pinyin, spelling 微信 as "weixin" or "wx") do not belong here: the
lexicon matches them as extra spellings of its terms (`variants.key_word_aliases`, `pinyin_aliases`), so
this map stays one-to-one.

Speed: the per-character work runs in C (`str.translate` over cached tables, `itertools.compress`, regex
over the text); Python only loops over the rare long separator runs, invisible characters among the
separators at the ends, plus signs and hearts, and repeats. The OpenCC table is built once per process (about
30 ms) and then costs nothing. `normalize_text` runs the same steps without collecting offsets, for readers
that need only the text (the classifier): about 1.4x faster.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import compress
from typing import Final

from clearcircle.signals import variants as _variants

__all__ = ["DEFAULT_NORMALIZER", "DROP", "SEP", "WORD", "Normalized", "Normalizer", "normalize", "normalize_text"]

WORD: Final = "w"
SEP: Final = "s"
DROP: Final = "d"

# Invisible letters (category Lo) used as "blank" characters to split words.
_HANGUL_FILLERS: Final = frozenset("\u115f\u1160\u3164\uffa0")
# The per-character caches grow with the distinct characters seen; past this size results are computed but
# not stored, so hostile input cannot make them hold all of Unicode.
_CACHE_LIMIT: Final = 65_536
# kinds string -> byte selectors: keep word characters, drop the rest unless told otherwise.
_SELECT: Final = bytes(1 if b == ord(WORD) else 0 for b in range(256))
# Stand-ins for non-word characters in the folded text (see `_FoldTable`).
_DROPPED: Final = "\x00"
_SEPARATOR: Final = "\x01"
_SENTINELS: Final = _DROPPED + _SEPARATOR
# A separator that may read as a character next to a contact word (+, ➕, ❤): step 2 decides, then it is
# either that character or a plain `_SEPARATOR`. Marked in the fold table so finding one is a C-level `in`.
_CUE: Final = "\x02"
# folded text -> kinds: every non-sentinel is a word character.
_NOT_SENTINEL: Final = re.compile("[^\x00\x01]")
# folded text -> the next character that is neither a sentinel nor a cue (step 2 looks past hearts with it)
_WORD_CHAR: Final = re.compile("[^\x00\x01\x02]")
_SENTINEL_KINDS: Final = {0: DROP, 1: SEP}
_SPACES: Final = frozenset(" \t\u3000\u00a0")


@dataclass(frozen=True)
class Normalized:
    """Normalised text plus, for each of its characters, the index of the original character it came from."""

    text: str
    offsets: tuple[int, ...]
    original: str

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map the normalised range [start, end) to the original range that covers the same characters.

        The original range also covers any separators or invisible characters that were removed inside it,
        which is what makes a hit on 加微信 show the user's 加 微 信.
        """
        n = len(self.text)
        if not 0 <= start <= end <= n:
            raise IndexError(f"span [{start}, {end}) outside normalised text of length {n}")
        if start == end:
            at = self.offsets[start] if start < n else len(self.original)
            return at, at
        return self.offsets[start], self.offsets[end - 1] + 1

    def original_text(self, start: int, end: int) -> str:
        """The user's own text behind the normalised range [start, end)."""
        a, b = self.span(start, end)
        return self.original[a:b]


def _base_fold(ch: str) -> str:
    """NFKC then case folding of one character, keeping a step only when it yields exactly one character."""
    nf = unicodedata.normalize("NFKC", ch)
    if len(nf) != 1:
        # ㈠ -> "(一)", ⒈ -> "1.": keep the single letter or digit inside the decoration, if that is all.
        core = [c for c in nf if unicodedata.category(c)[0] not in "PZ"]
        nf = core[0] if len(core) == 1 and unicodedata.category(core[0])[0] in "LN" else ch
    cf = nf.casefold()
    return cf if len(cf) == 1 else nf


def _is_invisible(ch: str) -> bool:
    """Characters removed wherever they are: they render as nothing (or only decorate the previous one)."""
    return unicodedata.category(ch) in ("Cf", "Mn", "Me") or ch in _HANGUL_FILLERS


def _kind_of_folded(ch: str) -> str:
    cat = unicodedata.category(ch)
    if cat[0] in "LN" or cat == "Mc":
        return WORD
    if cat in ("Cf", "Mn", "Me"):
        return DROP
    return SEP


class _FoldTable(dict[int, str]):
    """`str.translate` table: ordinal -> folded word character, or the `_DROPPED` / `_SEPARATOR` sentinel.

    Marking non-word characters with sentinels lets the common case be finished by C-level string calls.
    Control characters (which could collide with the sentinels) are separators, so they map to a sentinel.
    """

    def __init__(self, normalizer: Normalizer) -> None:
        super().__init__()
        self._normalizer = normalizer

    def __missing__(self, key: int) -> str:
        ch = chr(key)
        folded = self._normalizer.fold_char(ch)
        if not folded:
            folded = _DROPPED
        elif _kind_of_folded(folded) == SEP:
            folded = _CUE if self._normalizer.variants and ch in _CUE_CHARS else _SEPARATOR
        if len(self) < _CACHE_LIMIT:
            self[key] = folded
        return folded


_CUE_CHARS: Final = _variants.PLUS_SIGNS | _variants.HEARTS
_XIN_LIKE: Final = frozenset(_variants.WECHAT_SECOND + "x")


class _ViewTable(dict[int, str]):
    """`str.translate` table for `Normalizer.view`: every character folded, separators included."""

    def __init__(self, normalizer: Normalizer) -> None:
        super().__init__()
        self._normalizer = normalizer

    def __missing__(self, key: int) -> str:
        ch = chr(key)
        folded = self._normalizer.fold_char(ch) or ch
        if len(self) < _CACHE_LIMIT:
            self[key] = folded
        return folded


class Normalizer:
    """One configured normalisation; `normalize` (module level) uses `DEFAULT_NORMALIZER`.

    A lexicon must normalise its terms and the texts it reads with the same instance, or terms and texts
    would not meet. Instances are safe to share between threads (the caches only ever gain equal entries).

    `variants` (default True) turns on the standard variant tables of `variants.py`: traditional ->
    simplified, digit forms, ideographic numerals in runs, plus signs and hearts around contact words.
    `char_map` is applied after them (so its keys are folded, simplified characters: lower case, half
    width): each key is one character, each value one character or "" (drop it). It is how further tables
    (look-alikes, a campaign's own homophones) plug in without touching the rest of the pipeline.
    """

    def __init__(
        self,
        char_map: Mapping[str, str] | None = None,
        *,
        max_gap: int = 3,
        max_repeat: int = 3,
        variants: bool = True,
    ) -> None:
        if max_gap < 0 or max_repeat < 1:
            raise ValueError("max_gap must be >= 0 and max_repeat >= 1")
        self.char_map: dict[str, str] = dict(char_map or {})
        for key, value in self.char_map.items():
            if len(key) != 1 or len(value) > 1:
                raise ValueError(f"char_map maps one character to at most one: {key!r} -> {value!r}")
        self.max_gap = max_gap
        self.max_repeat = max_repeat
        self.variants = variants
        self._t2s: dict[str, str] = _variants.t2s_table() if variants else {}
        self._fold = _FoldTable(self)
        self._view = _ViewTable(self)
        self._separators: dict[str, str] = {}
        # Over a string of kinds: a whole separator run between two word characters, longer than max_gap.
        self._long_run = re.compile(rf"(?<={WORD})(?:{DROP}*{SEP}){{{max_gap + 1},}}{DROP}*(?={WORD})")
        self._long_sep = _SEPARATOR * (max_gap + 1)
        self._repeat = re.compile(rf"([^0-9])\1{{{max_repeat},}}", re.DOTALL)
        self._numeral_run: re.Pattern[str] | None = None
        self._numerals: dict[int, str] = {}
        if variants:
            numerals = "".join(_variants.CONTEXT_NUMERALS)
            self._numeral_run = re.compile(f"[0-9{numerals}]{{{_variants.NUMERAL_RUN},}}")
            self._numerals = str.maketrans(_variants.CONTEXT_NUMERALS)

    def fold_char(self, ch: str) -> str:
        """The character `ch` becomes, ignoring its neighbours; "" when it is always dropped."""
        if _is_invisible(ch):
            return ""
        folded = _base_fold(ch)
        if self.variants:
            folded = _variants.digit_form(folded) or folded
            folded = self._t2s.get(folded, folded)
        folded = self.char_map.get(folded, folded)
        if folded and _kind_of_folded(folded) == DROP:
            return ""
        return folded

    def char_kind(self, ch: str) -> str:
        """'w' for a word character, 's' for a separator, 'd' for a character that is always dropped."""
        folded = self.fold_char(ch)
        return _kind_of_folded(folded) if folded else DROP

    def has_separator(self, text: str) -> bool:
        """Whether `text` holds a separator: a word boundary once the text is normalised away."""
        folded = text.translate(self._fold)
        return _SEPARATOR in folded or _CUE in folded  # a plus sign or heart left in a gap is a separator

    def view(self, text: str) -> str:
        """`text` with every character folded (step 1) and nothing removed: same length, same offsets.

        For patterns whose punctuation matters (URLs, ¥99, 9.9元), which the normalised text has dropped.
        Invisible characters are kept as they are.
        """
        return text.translate(self._view)

    def normalize(self, text: str) -> Normalized:
        """Normalise `text`; see the module docstring for the steps."""
        out, offsets = self._run(text, True)
        return Normalized(out, offsets, text)

    def normalize_text(self, text: str) -> str:
        """`normalize(text).text` without building the offset map.

        For readers that never show evidence: the classifier scores every post and needs only the text, and
        the map (a tuple the length of the text, plus the dataclass) is about a third of the normaliser's time.
        Same steps, same code: `normalize` and this differ only in whether offsets are collected.
        """
        return self._run(text, False)[0]

    def _run(self, text: str, with_offsets: bool) -> tuple[str, tuple[int, ...]]:
        """The steps of the module docstring; offsets are () when `with_offsets` is false."""
        n = len(text)
        marked = text.translate(self._fold)
        if _CUE in marked:
            marked = self._contact_symbols(text, marked)
        offsets: tuple[int, ...] = ()
        if _DROPPED not in marked and _SEPARATOR not in marked:
            out = marked
            if with_offsets:
                offsets = tuple(range(n))
        else:
            core = marked.strip(_SENTINELS)  # from the first to the last word character
            lead = n - len(marked.lstrip(_SENTINELS)) if core else n
            end = lead + len(core)
            out, offsets = self._core(core, lead, with_offsets) if core else ("", ())
            if lead or end < n:
                left, left_offsets = self._edge(text, marked, 0, lead)
                right, right_offsets = self._edge(text, marked, end, n)
                out = left + out + right
                if with_offsets:
                    offsets = left_offsets + offsets + right_offsets
        if self._numeral_run is not None and self._numeral_run.search(out) is not None:
            out = self._numeral_run.sub(self._digits, out)  # same length: offsets unchanged
        if self._repeat.search(out) is not None:
            out, offsets = self._collapse_repeats(out, offsets, with_offsets)
        return out, offsets

    def _digits(self, run: re.Match[str]) -> str:
        return run.group().translate(self._numerals)

    def _contact_symbols(self, text: str, marked: str) -> str:
        """Step 2: a plus sign before a contact word reads 加, a heart after V reads 心 (same length).

        `marked` holds `_CUE` where the text has a plus sign or a heart; each becomes 加, 心 or a separator.
        """
        n = len(text)
        chars = list(marked)
        after = -1  # the first word character after the current run of cues and sentinels (n: none)
        i = marked.find(_CUE)
        while i >= 0:
            becomes = _SEPARATOR
            if text[i] in _variants.HEARTS:
                j = i - 1
                while j >= 0 and marked[j] == _DROPPED:
                    j -= 1
                if after <= i:  # found once per run: a run of hearts stays linear, not quadratic
                    word = _WORD_CHAR.search(marked, i + 1)
                    after = word.start() if word else n
                k = after  # 微❤信 is 微信 with a heart in it, not 微心 + 信
                if j >= 0 and marked[j] in _variants.HEART_AFTER and (k == n or marked[k] not in _XIN_LIKE):
                    becomes = "心"
            else:  # not an operator: nothing glued before it (1+v, C++ vs), a contact word after it
                k = i - 1
                while k >= 0 and marked[k] == _DROPPED:
                    k -= 1
                infix = k >= 0 and (marked[k] == _CUE or (marked[k].isascii() and marked[k].isalnum()))
                j = i + 1
                while j < n and (marked[j] == _DROPPED or text[j] in _SPACES):
                    j += 1
                if not infix and j < n and marked[j] in _variants.PLUS_BEFORE:
                    becomes = "加"
            chars[i] = becomes
            i = marked.find(_CUE, i + 1)
        return "".join(chars)

    def _core(self, core: str, base: int, with_offsets: bool = True) -> tuple[str, tuple[int, ...]]:
        """Step 4 between the first and last word character, where every separator run has words around it."""
        end = base + len(core)
        if self._long_sep in core.replace(_DROPPED, ""):  # some run is too long: one space stands for it
            kinds = _NOT_SENTINEL.sub(WORD, core).translate(_SENTINEL_KINDS)
            sel = bytearray(kinds, "ascii").translate(_SELECT)  # word characters only, by default
            src = list(core)
            for m in self._long_run.finditer(kinds):
                first = kinds.index(SEP, m.start())
                sel[first] = 1
                src[first] = " "
            return "".join(compress(src, sel)), tuple(compress(range(base, end), sel)) if with_offsets else ()
        # Common case, all in C: every run is short, so every non-word character goes.
        out = core.replace(_DROPPED, "").replace(_SEPARATOR, "")
        if not with_offsets:
            return out, ()
        keep = memoryview(core.replace(_SEPARATOR, _DROPPED).encode("utf-32-le")).cast("I")
        return out, tuple(compress(range(base, end), keep))

    def _edge(self, text: str, marked: str, start: int, end: int) -> tuple[str, tuple[int, ...]]:
        """Separators before the first or after the last word character are not between words: kept."""
        if _DROPPED not in marked[start:end]:  # the usual edge (a full stop, an emoji): all separators, in C
            return text[start:end].translate(self._view), tuple(range(start, end))
        kept = [i for i in range(start, end) if marked[i] == _SEPARATOR]
        return "".join(self._fold_separator(text[i]) for i in kept), tuple(kept)

    def _fold_separator(self, ch: str) -> str:
        folded = self._separators.get(ch)
        if folded is None:
            folded = self.fold_char(ch)
            if len(self._separators) < _CACHE_LIMIT:
                self._separators[ch] = folded
        return folded

    def _collapse_repeats(self, out: str, offsets: tuple[int, ...],
                          with_offsets: bool = True) -> tuple[str, tuple[int, ...]]:
        keep = bytearray(b"\x01") * len(out)
        for m in self._repeat.finditer(out):
            keep[m.start() + self.max_repeat : m.end()] = bytes(m.end() - m.start() - self.max_repeat)
        return "".join(compress(out, keep)), tuple(compress(offsets, keep)) if with_offsets else ()


DEFAULT_NORMALIZER: Final = Normalizer()


def normalize(text: str) -> Normalized:
    """Normalise `text` with the default settings (standard variant tables, gap 3, repeat 3)."""
    return DEFAULT_NORMALIZER.normalize(text)


def normalize_text(text: str) -> str:
    """`normalize(text).text`, without the offset map (see `Normalizer.normalize_text`)."""
    return DEFAULT_NORMALIZER.normalize_text(text)
