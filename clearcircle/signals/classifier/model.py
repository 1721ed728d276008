"""The shipped marketing classifier, scored one message at a time without scikit-learn.

Training (`train.py`) fits, per script part, scikit-learn's `TfidfVectorizer(analyzer="char", binary=True)`
followed by `LogisticRegression`. Calling that pipeline per message costs about a millisecond (input
validation, a sparse matrix, several array allocations); the signal runs on every post, so this module
reproduces the same arithmetic itself. With binary term frequency the tf-idf row of a text is idf_g for each
distinct vocabulary n-gram g it contains, so

    d = intercept + sum(coef_g * idf_g) / sqrt(sum(idf_g ** 2))      over the distinct n-grams found
    p = 1 / (1 + exp(-d))

and each vocabulary entry needs only `coef * idf` and `idf ** 2`, kept together as one complex number so a
single C-level `sum` adds both. The result equals scikit-learn's `predict_proba` to rounding (tests hold it
to 1e-6; in practice ~1e-15).

Finding the n-grams: an Aho-Corasick automaton over the vocabulary (ahocorasick-rs, already used by the
lexicon) reports every vocabulary n-gram of the text in one pass in Rust, without making a Python string per
n-gram; that is what makes ~2x the speed of the pure-Python path (`engine="python"`: slice the n-grams, look
them up in a dict), which is kept as the readable reference and is tested to give the same numbers.

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
from itertools import chain, repeat
from operator import add, itemgetter
from pathlib import Path
from typing import Any, Final

import numpy as np

from clearcircle.signals.classifier.features import shape_marked
from clearcircle.signals.text_normalize import normalize

__all__ = ["DEFAULT_MODEL_PATH", "FORMAT", "PARTS", "MarketingModel", "Part", "part_of"]

DEFAULT_MODEL_PATH: Final = Path(__file__).resolve().parent / "model" / "marketing.npz"
FORMAT: Final = 1
PARTS: Final = ("cjk", "other")
# CJK Unified Ideographs with extension A, compatibility ideographs and the supplementary-plane extensions.
_CJK: Final = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
# scikit-learn's char analyzer collapses every run of two or more whitespace characters to one space first.
_WHITE_SPACES: Final = re.compile(r"\s\s+")
_PATTERN: Final = itemgetter(0)  # (pattern index, start, end) -> pattern index
_ZERO: Final = repeat(0j)  # default of dict.get for n-grams outside the vocabulary
ENGINES: Final = ("aho-corasick", "python")
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
    cjk = len(text) - len(_CJK.sub("", text))
    return "cjk" if cjk * 20 >= len(text) else "other"


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

    __slots__ = ("automaton", "intercept", "lookup", "marked", "max_n", "min_n", "threshold", "weights")

    def __init__(self, part: Part, engine: str) -> None:
        # coef * idf (real part) and idf ** 2 (imaginary part), index-aligned with the vocabulary.
        self.weights = list(map(complex, (part.coef * part.idf).tolist(), (part.idf * part.idf).tolist()))
        self.intercept = part.intercept
        self.min_n, self.max_n = part.ngram_range
        self.threshold = part.threshold
        self.marked = part.shape_markers
        self.automaton: Any = None
        self.lookup: dict[str, complex] = {}
        if engine == "aho-corasick":
            import ahocorasick_rs

            self.automaton = ahocorasick_rs.AhoCorasick(
                list(part.terms), matchkind=ahocorasick_rs.MatchKind.Standard,
                implementation=ahocorasick_rs.Implementation.ContiguousNFA)
        elif engine == "python":
            self.lookup = dict(zip(part.terms, self.weights, strict=True))
        else:
            raise ValueError(f"unknown engine {engine!r}")

    def decision(self, text: str) -> float:
        text = _WHITE_SPACES.sub(" ", shape_marked(text) if self.marked else text)
        if self.automaton is not None:
            found = set(map(_PATTERN, self.automaton.find_matches_as_indexes(text, overlapping=True)))
            total = sum(map(self.weights.__getitem__, found), 0j)
        else:
            total = sum(map(self.lookup.get, self._ngrams(text), _ZERO), 0j)
        den = total.imag
        return self.intercept + (total.real / math.sqrt(den) if den else 0.0)

    def _ngrams(self, text: str) -> set[str]:
        """The distinct n-grams of every length, built by C-level string concatenation (no loop per n-gram)."""
        levels = [text]
        grams: list[str] | str = text
        for n in range(2, self.max_n + 1):
            grams = list(map(add, grams, text[n - 1 :]))
            levels.append(grams)
        return set(chain.from_iterable(levels[self.min_n - 1 :]))


class MarketingModel:
    """Loaded once (see `clearcircle.signals.classifier.shipped_model`); thread-safe (read-only after init)."""

    def __init__(self, parts: dict[str, Part], meta: dict[str, Any], engine: str = "aho-corasick") -> None:
        if not parts:
            raise ValueError("a model needs at least one part")
        self.parts = parts
        self.meta = meta
        self.engine = engine
        self._scorers = {name: _Scorer(part, engine) for name, part in parts.items()}
        # A part missing from the model (no training data in that script) falls back to the other one.
        for name in PARTS:
            if name not in self._scorers:
                self._scorers[name] = next(iter(self._scorers.values()))

    # --- scoring ------------------------------------------------------------------------------------------

    def probability(self, normalized_text: str) -> float:
        """P(marketing) of an already normalised text (what `normalize(text).text` returns)."""
        return _sigmoid(self._scorers[part_of(normalized_text)].decision(normalized_text))

    def score(self, text: str) -> float:
        """P(marketing) of a text as the user wrote it (normalises it first)."""
        return self.probability(normalize(text).text)

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

    def with_engine(self, engine: str) -> MarketingModel:
        """The same model scored by another engine (`python`: the pure-Python reference path)."""
        return MarketingModel(self.parts, self.meta, engine)

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL_PATH, engine: str = "aho-corasick") -> MarketingModel:
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
        return cls(parts, meta, engine)

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
