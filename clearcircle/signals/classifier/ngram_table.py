"""The scorer's native hot path: a hash table of a part's vocabulary n-grams, and one compiled pass over a text.

Why native code: per message the scorer looks up ~90 character n-grams. Every Python-level way of doing that
(slicing + dict, ahocorasick_rs reporting matches as tuples, NumPy integer keys) spends its time on Python
objects or on per-call array overhead (docs/classifier.md, "Speed"). Here one numba-compiled function walks
the text's code points, finds each n-gram in an open-addressing table, drops repeats and sums the weights,
with no Python object per n-gram.

Exactness (results must equal scikit-learn's): a key identifies an n-gram exactly. An n-gram of up to three
characters packs into one 64-bit key, 21 bits per character (code point + 1, so that 0 means "empty slot"
and lengths cannot be confused); longer n-grams (a model trained with n > 3) use a 64-bit hash with the top
bit set and are verified character by character against the stored vocabulary, so a hash collision can never
count as a match.

Compilation: numba is imported and the kernels compiled on first use (not at package import), with
`cache=True`, so later processes load the machine code from `__pycache__` (or numba's user cache when the
package folder is read-only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["NgramTable"]


class NgramTable:
    """One part's vocabulary as a hash table, and the weights each n-gram adds (coef*idf, idf**2)."""

    __slots__ = ("_sums", "lengths", "max_n", "min_n", "shift", "table", "term_cps", "weights")

    def __init__(self, terms: Sequence[str], coef: np.ndarray, idf: np.ndarray, ngram_range: tuple[int, int]) -> None:
        from clearcircle.signals.classifier import ngram_kernels  # imports numba: only when a model is built

        self.min_n, self.max_n = int(ngram_range[0]), int(ngram_range[1])
        width = max(1, self.max_n, max(map(len, terms), default=1))
        # a fixed-width UTF-32 array is already the code points, zero-padded
        self.term_cps = np.array(terms, dtype=f"<U{width}").view(np.uint32).reshape(len(terms), width).copy()
        self.lengths = np.fromiter(map(len, terms), dtype=np.int64, count=len(terms))
        bits = max(4, int(2 * max(1, len(terms)) - 1).bit_length())  # load factor at most 1/2
        self.table = ngram_kernels.build(self.term_cps, self.lengths, bits)
        self.shift = 64 - bits
        self.weights = np.ascontiguousarray(np.stack([coef * idf, idf * idf], axis=1), dtype=np.float64)
        self._sums = ngram_kernels.weight_sums

    def sums(self, text: str) -> tuple[float, float]:
        """(sum coef*idf, sum idf**2) over the distinct vocabulary n-grams of `text`, as sklearn's char analyzer
        would cut it (the caller has already collapsed whitespace runs the way the analyzer does)."""
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return self._sums(cps, self.table, self.shift, self.weights, self.term_cps, self.lengths, self.min_n,
                          self.max_n)
