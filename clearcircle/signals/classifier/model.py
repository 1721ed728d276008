"""The shipped marketing classifier, scored one message at a time without scikit-learn.

Training (`train.py`) fits, per script part, scikit-learn's `TfidfVectorizer(analyzer="char", binary=True)`
followed by `LogisticRegression`. Calling that pipeline per message costs about a millisecond (input
validation, a sparse matrix, several array allocations); the signal runs on every post, so this module
reproduces the same arithmetic itself. With binary term frequency the tf-idf row of a text is idf_g for each
distinct vocabulary n-gram g it contains, so

    d = intercept + sum(coef_g * idf_g) / sqrt(sum(idf_g ** 2))      over the distinct n-grams found
    p = 1 / (1 + exp(-d))

and each vocabulary entry needs only `coef * idf` and `idf ** 2`. The result equals scikit-learn's
`predict_proba` to rounding (tests hold it to 1e-12; in practice ~1e-15).

Finding the n-grams (`ngram_table`): at load, each part's vocabulary becomes an open-addressing hash table
keyed exactly by the n-gram's code points; per message, one numba-compiled function walks every n-gram of the
part's range over the text's code points, looks each up, drops repeats and returns the two sums, with no
Python object per n-gram. It replaced an Aho-Corasick automaton (ahocorasick-rs) whose binding built a Python
tuple for each of the ~90 matches of a message, plus a Python set over them: the scorer went from ~41 to
~17 µs CPU a message (docs/classifier.md, "Speed", with what else was tried). numba is imported and the
kernels loaded on the first model load, not on package import.

A part may read its texts with shape marks (`features.shape_marked`, a flag stored with the part): the
scorer adds them exactly as training did, before the n-grams are found.

Two parts, routed by script: texts with CJK ideographs (at least 5% of characters) go to the `cjk` model,
all others to `other` (English today). One text is always scored by exactly one part, in training and at run
time, so a Chinese post that also holds Latin letters (加V, wx, a URL) is read by the model that saw such posts.

The file is a NumPy `.npz` (no pickle: loading cannot run code): per part the n-gram strings, idf, coef and
scalars, plus a JSON `meta` (hyper-parameters, thresholds, data summary, normaliser probe).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Final

import numpy as np

from clearcircle.signals.classifier.features import shape_marked
from clearcircle.signals.classifier.ngram_table import NgramTable
from clearcircle.signals.text_normalize import normalize, normalize_text

__all__ = ["DEFAULT_MODEL_PATH", "FORMAT", "PARTS", "MarketingModel", "Part", "part_of"]

DEFAULT_MODEL_PATH: Final = Path(__file__).resolve().parent / "model" / "marketing.npz"
FORMAT: Final = 1
PARTS: Final = ("cjk", "other")
# CJK Unified Ideographs with extension A, compatibility ideographs and the supplementary-plane extensions.
_CJK: Final = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
# scikit-learn's char analyzer collapses every run of two or more whitespace characters to one space first.
_WHITE_SPACES: Final = re.compile(r"\s\s+")
# The normaliser's behaviour is fingerprinted into the model: if the normaliser changes, the n-grams the model
# was trained on no longer match what it is fed (and the split may move), and `evaluate` says to retrain.
NORMALIZER_PROBE: Final = "加薇信 ＶＸ：ab\u200bc-1 發貨 壹①１ 好好好好好 Free  ENTRY!! 扣扣 威芯 v❤"


def normalizer_fingerprint() -> str:
    """A digest of what the normaliser does today: the probe sentence, every common CJK ideograph (catches
    traditional -> simplified and homophone maps) and each Latin, punctuation, symbol, full-width and emoji
    character between two letters. Stored with the model at training; compared by `evaluate`."""
    digest = hashlib.sha256(normalize(NORMALIZER_PROBE).text.encode())
    digest.update(normalize("".join(map(chr, range(0x4E00, 0xA000)))).text.encode())
    for code in chain(range(0x20, 0x250), range(0x2000, 0x2C00), range(0x3000, 0x3100), range(0xFE00, 0xFFF0),
                      range(0x1F300, 0x1FB00)):
        digest.update(normalize(f"a{chr(code)}b").text.encode() + b"\x00")
    return digest.hexdigest()[:16]


def part_of(text: str) -> str:
    """Which part scores a normalised text: `cjk` if at least 5% of its characters are CJK ideographs.

    A share rather than "any": a stray ideograph in an English message (a normaliser mapping ❤ -> 心, a digit
    written 一) must not hand it to the Chinese model, while a QQ number followed by 口 (扣) still goes there.
    """
    if _CJK.search(text) is None:
        return "other"
    n = len(text)
    if n <= 20:  # one ideograph is already 5%: no need to count
        return "cjk"
    return "cjk" if (n - len(_CJK.sub("", text))) * 20 >= n else "other"


def _sigmoid(d: float) -> float:
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)  # no overflow for very negative d
    return e / (1.0 + e)


@dataclass(frozen=True)
class Part:
    """One part's logistic regression over tf-idf character n-grams, in the form the scorer needs."""

    terms: tuple[str, ...]
    idf: np.ndarray
    coef: np.ndarray
    intercept: float
    ngram_range: tuple[int, int]
    threshold: float
    shape_markers: bool = False  # the part reads `features.shape_marked(text)`, not the text itself



class _Scorer:
    """The hot path of one part."""

    __slots__ = ("intercept", "marked", "table", "threshold")

    def __init__(self, part: Part) -> None:
        self.table = NgramTable(part.terms, part.coef, part.idf, part.ngram_range)
        self.intercept = part.intercept
        self.threshold = part.threshold
        self.marked = part.shape_markers

    def decision(self, text: str) -> float:
        text = _WHITE_SPACES.sub(" ", shape_marked(text) if self.marked else text)
        dot, square = self.table.sums(text)
        return self.intercept + (dot / math.sqrt(square) if square else 0.0)


class MarketingModel:
    """Loaded once (see `clearcircle.signals.classifier.shipped_model`); thread-safe (read-only after init)."""

    def __init__(self, parts: dict[str, Part], meta: dict[str, Any]) -> None:
        if not parts:
            raise ValueError("a model needs at least one part")
        self.parts = parts
        self.meta = meta
        self._scorers = {name: _Scorer(part) for name, part in parts.items()}
        # A part missing from the model (no training data in that script) falls back to the other one.
        for name in PARTS:
            if name not in self._scorers:
                self._scorers[name] = next(iter(self._scorers.values()))

    # --- scoring ------------------------------------------------------------------------------------------

    def probability(self, normalized_text: str) -> float:
        """P(marketing) of an already normalised text (what `normalize(text).text` returns)."""
        return _sigmoid(self._scorers[part_of(normalized_text)].decision(normalized_text))

    def score(self, text: str) -> float:
        """P(marketing) of a text as the user wrote it (normalises it first, without the offset map)."""
        return self.probability(normalize_text(text))

    def threshold(self, normalized_text: str) -> float:
        """The decision threshold tuned (on training data only) for the part that scores this text."""
        return self._scorers[part_of(normalized_text)].threshold

    def is_marketing(self, normalized_text: str) -> bool:
        """Whether the probability reaches the tuned threshold of the text's part."""
        scorer = self._scorers[part_of(normalized_text)]
        return _sigmoid(scorer.decision(normalized_text)) >= scorer.threshold

    def normalizer_matches(self) -> bool:
        """Whether today's normaliser behaves as the one the model was trained with (see `normalizer_fingerprint`)."""
        return self.meta.get("normalizer") == normalizer_fingerprint()

    # --- file ---------------------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the `.npz` (deterministic: same model, same bytes; no pickled objects)."""
        arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(self.meta, sort_keys=True, ensure_ascii=False))}
        for name, part in sorted(self.parts.items()):
            width = max(1, part.ngram_range[1])
            arrays[f"{name}.terms"] = np.array(part.terms, dtype=f"<U{width}")
            arrays[f"{name}.idf"] = np.asarray(part.idf, dtype=np.float64)
            arrays[f"{name}.coef"] = np.asarray(part.coef, dtype=np.float64)
            arrays[f"{name}.scalars"] = np.array([part.intercept, part.threshold, *part.ngram_range,
                                                  float(part.shape_markers)], dtype=np.float64)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL_PATH) -> MarketingModel:
        """Read a model written by `save` (allow_pickle=False)."""
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: model format {meta.get('format')!r}, expected {FORMAT}")
            parts = {}
            for name in sorted(key.removesuffix(".scalars") for key in npz.files if key.endswith(".scalars")):
                intercept, threshold, min_n, max_n, *marked = npz[f"{name}.scalars"].tolist()  # 4 before markers
                parts[name] = Part(tuple(npz[f"{name}.terms"].tolist()), npz[f"{name}.idf"], npz[f"{name}.coef"],
                                   float(intercept), (int(min_n), int(max_n)), float(threshold),
                                   bool(marked and marked[0]))
        return cls(parts, meta)

    @classmethod
    def from_sklearn(cls, fitted: dict[str, tuple[Any, ...]], meta: dict[str, Any]) -> MarketingModel:
        """From {part: (fitted TfidfVectorizer, fitted binary LogisticRegression, threshold[, shape_markers])};
        with shape_markers true the pipeline was fitted on `features.shape_marked(text)`."""
        parts = {}
        for name, (vectorizer, lr, threshold, *marked) in fitted.items():
            if not (vectorizer.analyzer == "char" and vectorizer.binary and vectorizer.norm == "l2"
                    and vectorizer.use_idf and not vectorizer.lowercase and vectorizer.preprocessor is None):
                raise ValueError("the scorer reproduces only char n-grams, binary tf, idf, l2 norm, no lowercasing")
            terms = vectorizer.get_feature_names_out().tolist()  # column order
            parts[name] = Part(tuple(terms), np.asarray(vectorizer.idf_, dtype=np.float64),
                               np.asarray(lr.coef_[0], dtype=np.float64), float(lr.intercept_[0]),
                               tuple(vectorizer.ngram_range), float(threshold), bool(marked and marked[0]))
        return cls(parts, {**meta, "format": FORMAT, "normalizer": normalizer_fingerprint(),
                           "normalizer_probe": normalize(NORMALIZER_PROBE).text})

    def to_sklearn(self, name: str) -> tuple[Any, Any]:
        """Rebuild the part's scikit-learn (vectorizer, classifier) from the file, for the per-call speed baseline."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        part = self.parts[name]
        vectorizer = TfidfVectorizer(analyzer="char", ngram_range=part.ngram_range, lowercase=False, binary=True,
                                     vocabulary={t: i for i, t in enumerate(part.terms)})
        vectorizer.fit(list(part.terms))  # fixed vocabulary: fit only sets up the transformer
        vectorizer.idf_ = part.idf
        lr = LogisticRegression()
        lr.classes_ = np.array([False, True])
        lr.coef_ = part.coef.reshape(1, -1)
        lr.intercept_ = np.array([part.intercept])
        lr.n_features_in_ = len(part.terms)
        return vectorizer, lr
