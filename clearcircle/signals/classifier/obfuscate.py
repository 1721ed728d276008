"""`obfuscate(text, seed)`: rewrite a message the way marketers dodge filters, deterministically.

Used by `clearcircle evaluate` to measure how much recall survives obfuscation (and that ordinary messages
do not become "marketing" when they are written oddly). The tactics are the ones issue 3 lists, seen in
friend-feed spam:

- contact-word swaps: 微信 -> 薇信 / 威芯 / 微 信 / V❤ / wx / vx, 加微信 -> 加V / +V, QQ -> 扣扣 / 企鹅, 电话 -> 电 话
- the whole message in traditional characters (OpenCC s2t)
- full-width Latin letters and digits (ＷＸ１２３)
- zero-width characters between characters
- symbols between characters (加*微*信, 加|微|信)
- digits as 一 / 壹 / ① / １
- characters repeated (好好好)
- spaces between characters

Each message gets its own random generator seeded from SHA-256 of (seed, text), so the result depends on
nothing but its two arguments (not on the order messages are processed in). Contact-word swaps always apply
when the text has such a word; then two to four of the other tactics are chosen, each applied at a rate a
human spammer would plausibly use (not every character). At most two separators (a symbol, a space) and one
zero-width character are inserted after any one character.
"""

from __future__ import annotations

import hashlib
import random
import re
from functools import lru_cache
from typing import Final

__all__ = ["TACTICS", "obfuscate"]

CONTACT_SWAPS: Final[dict[str, tuple[str, ...]]] = {
    "加微信": ("加V", "+V", "加vx", "➕薇信", "加威芯"),
    "微信": ("薇信", "威芯", "微 信", "V❤", "wx", "vx", "威信", "v信"),
    "qq": ("扣扣", "企鹅", "Q Q", "ＱＱ"),
    "电话": ("电 话", "dian话", "☎"),
    "联系": ("联 系", "连系"),
}
_CONTACT_RE: Final = re.compile("|".join(sorted(map(re.escape, CONTACT_SWAPS), key=len, reverse=True)),
                                re.IGNORECASE)
_DIGIT_FORMS: Final = (
    "〇一二三四五六七八九",
    "零壹贰叁肆伍陆柒捌玖",
    "⓪①②③④⑤⑥⑦⑧⑨",
    "０１２３４５６７８９",
)
_ZERO_WIDTH: Final = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
_SYMBOLS: Final = ("*", "-", "|", "·", "/", "~", "♥", "★", ".", "_", "❤", "。")
TACTICS: Final = ("traditional", "fullwidth", "zero_width", "symbols", "digits", "repeat", "spaces")


@lru_cache(maxsize=1)
def _s2t():  # noqa: ANN202 - opencc has no type information
    import opencc

    return opencc.OpenCC("s2t")


def _rng(text: str, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _fullwidth(ch: str) -> str:
    return chr(ord(ch) + 0xFEE0) if ch.isascii() and ch.isalnum() else ch


def obfuscate(text: str, seed: int = 0) -> str:
    """The message rewritten with a deterministic mix of the tactics above; always differs from a non-empty text."""
    if not text:
        return text
    rng = _rng(text, seed)
    out = _CONTACT_RE.sub(lambda m: rng.choice(CONTACT_SWAPS[m.group(0).lower()]), text)
    chosen = set(rng.sample(TACTICS, rng.randint(2, 4)))
    if "traditional" in chosen:
        out = _s2t().convert(out)
    if "digits" in chosen:
        form = rng.choice(_DIGIT_FORMS)  # one spammer, one style per message
        out = "".join(form[int(c)] if c.isascii() and c.isdigit() else c for c in out)
    if "fullwidth" in chosen:
        out = "".join(_fullwidth(c) if rng.random() < 0.7 else c for c in out)
    inserts = chosen & {"zero_width", "symbols", "spaces", "repeat"}
    if inserts:
        pieces: list[str] = []
        last = len(out) - 1
        for i, ch in enumerate(out):
            pieces.append(ch)
            if "repeat" in inserts and not ch.isspace() and rng.random() < 0.08:
                pieces.append(ch * rng.randint(1, 3))
            if i == last:
                break
            if "zero_width" in inserts and rng.random() < 0.3:
                pieces.append(rng.choice(_ZERO_WIDTH))
            if "symbols" in inserts and rng.random() < 0.25:
                pieces.append(rng.choice(_SYMBOLS))
            if "spaces" in inserts and rng.random() < 0.25:
                pieces.append(" ")
        out = "".join(pieces)
    if out == text:  # nothing applied (e.g. traditional on English): at least hide a zero-width space
        out = text[:1] + "\u200b" + text[1:]
    return out
