"""numba kernels of `ngram_table` (imported only when a model is built, so importing the package stays cheap).

Keys (see `ngram_table` for why they are exact): an n-gram of up to three code points is packed as
sum((cp_k + 1) << 21k), never 0; a longer one is an FNV-1a hash with the top bit set, verified against the
stored code points of the vocabulary entry it hits. Slots: Fibonacci hashing of the key, linear probing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

PACKED_MAX = 3  # n-grams up to this length pack exactly into one 63-bit key
_FIB = np.uint64(0x9E3779B97F4A7C15)
_FNV_PRIME = np.uint64(0x100000001B3)
_FNV_BASIS = np.uint64(0xCBF29CE484222325)
_LONG_FLAG = np.int64(-(1 << 63))
_ONE = np.uint64(1)
CACHED = True  # False when numba found no writable cache folder: then each process compiles (~6 s, once)


def _jit(fn: Callable[..., Any]) -> Any:
    """njit with the machine code cached on disk (`__pycache__` beside this file, else numba's user cache);
    numba refuses `cache=True` outright when neither folder is writable (a read-only install without a home),
    and then the kernels are compiled in memory instead of failing the model load."""
    global CACHED
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:
        CACHED = False
        return numba.njit(nogil=True)(fn)


@_jit
def _hashed_key(cps: np.ndarray, start: int, n: int) -> np.int64:
    """Key of an n-gram longer than PACKED_MAX (a hash: callers verify the match)."""
    h = _FNV_BASIS
    for k in range(n):
        h = (h ^ np.uint64(cps[start + k] + 1)) * _FNV_PRIME
    return np.int64(h >> _ONE) | _LONG_FLAG


@_jit
def _key(cps: np.ndarray, start: int, n: int) -> np.int64:
    if n > PACKED_MAX:
        return _hashed_key(cps, start, n)
    key = np.int64(0)
    for k in range(n):
        key |= np.int64(cps[start + k] + 1) << np.int64(21 * k)
    return key


@_jit
def _slot(key: np.int64, shift: np.uint64) -> np.int64:
    return np.int64((np.uint64(key) * _FIB) >> shift)


@_jit
def build(term_cps: np.ndarray, lengths: np.ndarray, bits: int) -> np.ndarray:
    """Table of 2**bits rows (key, vocabulary index), key 0 meaning an empty row."""
    size = np.int64(1) << np.int64(bits)
    mask = size - 1
    shift = np.uint64(64 - bits)
    table = np.zeros((size, 2), dtype=np.int64)
    for idx in range(term_cps.shape[0]):
        key = _key(term_cps[idx], 0, lengths[idx])
        slot = _slot(key, shift)
        while table[slot, 0] != 0:
            slot = (slot + 1) & mask
        table[slot, 0] = key
        table[slot, 1] = idx
    return table


@_jit
def weight_sums(text: np.ndarray, table: np.ndarray, shift: int, weights: np.ndarray, term_cps: np.ndarray,
                lengths: np.ndarray, min_n: int, max_n: int) -> tuple[float, float]:
    """(sum of weights[:, 0], sum of weights[:, 1]) over the DISTINCT vocabulary n-grams of `text`, a code
    point array; the n-grams are every slice of min_n..max_n characters, as sklearn's char analyzer cuts."""
    mask = table.shape[0] - 1
    ushift = np.uint64(shift)
    length = text.shape[0]
    found = np.empty(max(1, length * (max_n - min_n + 1)), dtype=np.int64)
    count = 0
    for start in range(length):
        packed = np.int64(0)
        for n in range(1, min(max_n, length - start) + 1):
            if n <= PACKED_MAX:
                packed |= np.int64(text[start + n - 1] + 1) << np.int64(21 * (n - 1))
                key = packed
            else:
                key = _hashed_key(text, start, n)
            if n < min_n:
                continue
            slot = _slot(key, ushift)
            while True:
                stored = table[slot, 0]
                if stored == 0:
                    break
                if stored == key:
                    idx = table[slot, 1]
                    same = True
                    if n > PACKED_MAX:  # a hash: verify the characters
                        same = lengths[idx] == n
                        k = 0
                        while same and k < n:
                            same = term_cps[idx, k] == text[start + k]
                            k += 1
                    if same:
                        found[count] = idx
                        count += 1
                        break
                slot = (slot + 1) & mask
    chosen = np.sort(found[:count])
    dot = 0.0
    square = 0.0
    previous = -1
    for i in range(count):
        idx = chosen[i]
        if idx != previous:
            dot += weights[idx, 0]
            square += weights[idx, 1]
            previous = idx
    return dot, square
