"""Property tests of the text normaliser (signals/text_normalize.py): any text, never an exception, an exact map.

Any Unicode (lone surrogates, NUL and the other control characters the normaliser uses internally as
markers, combining marks, emoji, huge runs): `normalize` returns, and its offset map is valid -- one
strictly increasing original index per output character, every `span` inside the original text -- and
`normalize_text` (the same steps without the map) returns the same text.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clearcircle.events.schemas import MAX_TEXT
from clearcircle.signals.text_normalize import Normalizer, normalize, normalize_text

# every code point, surrogates included (hypothesis leaves out category Cs unless asked)
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None, exclude_categories=())
# the characters that matter most to the normaliser, drawn often
TRICKY = st.sampled_from(list("\x00\x01\x02\x03 \t\n+➕❤♥vVwWxX微信加薇一二三四五六七八九〇零壹贰叁88888.,-_ "
                              "\u200b\u200d\ufeff\u00ad\u0336\ufe0f\u20e3\u3164\u115f\ud800\udfff\U0001f600"
                              "①❶ＷＸ發線"))
TEXTS = st.text(st.one_of(ANY_CHAR, TRICKY), max_size=300)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_map(text: str) -> None:
    result = normalize(text)
    n = len(result.text)
    assert result.original == text
    assert normalize_text(text) == result.text  # the classifier's path (no offset map) gives the same text
    assert len(result.offsets) == n
    assert all(0 <= o < len(text) for o in result.offsets)
    assert all(a < b for a, b in zip(result.offsets, result.offsets[1:], strict=False)), "strictly increasing"
    for start in range(0, n + 1, max(1, n // 7)):
        for end in range(start, n + 1, max(1, n // 5)):
            a, b = result.span(start, end)
            assert 0 <= a <= b <= len(text)
            assert result.original_text(start, end) == text[a:b]


@FUZZ
@given(TEXTS)
@example("\x00\x01\x02")
@example("加\x00微\x01信\x02")
@example("\ud800加\udfff微信")
@example("+" * 50 + "v")
@example("一" * 1000)
def test_any_text_normalises_with_a_valid_offset_map(text):
    check_map(text)


@pytest.mark.parametrize("unit", ["加", " ", "\u200b", "8", "一", "\x00", "❤", "V❤", "+", "+v", "v", "❤\u200b"])
def test_huge_runs_normalise_in_linear_time(unit):
    """A post's text may be MAX_TEXT characters of one symbol. Regression: a run of hearts took time
    quadratic in its length (20,000 hearts: 97 s, a request that held the pipeline lock)."""
    text = unit * (MAX_TEXT // len(unit))
    started = time.process_time()
    check_map(text)
    # generous bound (tens of ms when linear): it only catches the quadratic blow-up
    assert time.process_time() - started < 5.0


@FUZZ
@given(TEXTS, st.integers(0, 5), st.integers(1, 5), st.booleans())
def test_every_configuration_keeps_the_map(text, gap, repeat, variants):
    normalizer = Normalizer(max_gap=gap, max_repeat=repeat, variants=variants)
    result = normalizer.normalize(text)
    assert normalizer.normalize_text(text) == result.text
    assert len(result.offsets) == len(result.text)
    assert all(a < b for a, b in zip(result.offsets, result.offsets[1:], strict=False))
    assert all(0 <= o < len(text) for o in result.offsets)
