"""Fit the marketing classifier on the training part of the corpus and export it for the fast scorer.

Why these choices:
- Character n-grams (1-3) of the normalised text: Chinese has no spaces to split words on, and obfuscation
  (加V, 薇信, symbols between characters) breaks word tokens but leaves most character n-grams intact.
- The `cjk` part reads its texts with two shape marks added (`features.shape_marked`: a length class and the
  longest digit run's class), which char n-grams cannot see; +0.005 out-of-fold Chinese F1 (docs/classifier.md,
  where the other candidates that did not help are listed: wider n-gram ranges, jieba words, digit folding,
  linear SVM, complement NB, NB-weighted LR, a per-source mixture).
- TF-IDF with binary tf (presence), then logistic regression: a linear model on sparse n-grams is accurate on
  SMS-like text, gives probabilities (the signal is a probability), and exports to a table the scorer reads per
  n-gram. Binary rather than sublinear tf: in messages this short an n-gram rarely repeats (validation F1 moved
  by < 0.005 either way), and presence lets the scorer sum over the set of n-grams without counting them,
  about twice as fast.
- One model per script part (`cjk` / `other`, see `model.part_of`), not one for both languages: the sets' spam rates
  differ (≈12% in English SMS, ≈45% in the Chinese sets) and a shared intercept and regularisation would
  serve one at the expense of the other; each part gets its own C, class weighting and threshold.
- Tuning only on the training part, by 5-fold cross-validation with hash folds (`split.validation_fold`; fold 0
  is the `is_validation` slice); the test part is never read here. The objective is mean per-language spam F1
  (the form of the targets), see `tune_parts`. The final model is refitted on the whole training part.
- Deterministic: hash split, sorted vocabulary, liblinear with a fixed random_state, a `.npz` with fixed zip
  timestamps and sorted JSON: the same data gives the same file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from clearcircle.signals.classifier.data import Corpus, Example
from clearcircle.signals.classifier.features import shape_marked
from clearcircle.signals.classifier.model import PARTS, MarketingModel, part_of
from clearcircle.signals.classifier.split import VALIDATION_FOLDS, is_validation, split, validation_fold

__all__ = ["NGRAM_RANGE", "Tuning", "fit_part", "make_pipeline", "train_model", "tune_parts"]

NGRAM_RANGE = (1, 3)
MIN_DF = 2  # an n-gram seen in one training text only is noise and would bloat the model
C_GRID = (3.0, 10.0, 30.0, 100.0)
CLASS_WEIGHTS: tuple[str | None, ...] = (None, "balanced")
THRESHOLDS = tuple(round(0.10 + 0.025 * i, 3) for i in range(33))  # 0.10 .. 0.90
DEFAULT_TUNING = {"C": 10.0, "class_weight": "balanced", "threshold": 0.5}
MAX_SCORER_ERROR = 1e-6
SHAPE_MARKED_PARTS = frozenset({"cjk"})  # parts that read features.shape_marked(text); see features.py

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Tuning:
    """Settings chosen for one part on its validation texts (all inside the training part)."""

    C: float
    class_weight: str | None
    threshold: float
    validation_f1: float | None  # out-of-fold F1 over the part's training texts; None when too small to tune
    validation_texts: int  # training texts that were held out once each (all of the part's)


def make_pipeline(C: float, class_weight: str | None, min_df: int = MIN_DF,  # noqa: N803
                  ngram_range: tuple[int, int] = NGRAM_RANGE) -> tuple[Any, Any]:
    """An unfitted (TfidfVectorizer, LogisticRegression) pair with the settings the scorer reproduces."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=ngram_range, min_df=min_df, binary=True,
                                 lowercase=False, dtype=np.float64)  # the normaliser already case-folds
    classifier = LogisticRegression(C=C, class_weight=class_weight, solver="liblinear", max_iter=1000,
                                    random_state=0)
    return vectorizer, classifier


def _f1(spam: np.ndarray, predicted: np.ndarray) -> float:
    tp = int(np.sum(spam & predicted))
    fp = int(np.sum(~spam & predicted))
    fn = int(np.sum(spam & ~predicted))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def part_input(part: str, text: str) -> str:
    """What a part's vectorizer reads for a normalised text (the scorer does the same, see `Part.shape_markers`)."""
    return shape_marked(text) if part in SHAPE_MARKED_PARTS else text


def _out_of_fold(examples: Sequence[Example], min_df: int,
                 part: str = "") -> dict[tuple[float, str | None], np.ndarray] | None:
    """Out-of-fold P(spam) of every training text of a part, for each (C, class weight) of the grid; None when a
    fold cannot be fitted (one label only) or the part is too small to tune on."""
    y = np.array([e.spam for e in examples], dtype=bool)
    folds = np.array([validation_fold(e.text) for e in examples])
    if y.sum() < 5 or (~y).sum() < 5:
        return None
    texts = [part_input(part, e.text) for e in examples]
    oof = {(C, cw): np.zeros(len(examples)) for C in C_GRID for cw in CLASS_WEIGHTS}
    for fold in range(VALIDATION_FOLDS):
        held = folds == fold
        if not held.any():
            continue
        if len(set(y[~held].tolist())) < 2:
            return None
        vectorizer, _ = make_pipeline(1.0, None, min_df)
        x_fit = vectorizer.fit_transform([t for t, h in zip(texts, held, strict=True) if not h])
        x_held = vectorizer.transform([t for t, h in zip(texts, held, strict=True) if h])
        for (C, class_weight), proba in oof.items():  # noqa: N806
            _, classifier = make_pipeline(C, class_weight, min_df)
            proba[held] = classifier.fit(x_fit, y[~held]).predict_proba(x_held)[:, 1]
    return oof


def _language_f1(counts: dict[str, np.ndarray]) -> float:
    """Mean over languages of spam F1, from per-language [tp, fp, fn] counts (languages with no spam count 0)."""
    scores = [2 * tp / (2 * tp + fp + fn) if tp else 0.0 for tp, fp, fn in counts.values()]
    return float(np.mean(scores)) if scores else 0.0


def tune_parts(by_part: dict[str, Sequence[Example]], min_df: int = MIN_DF,
               progress: Progress | None = None) -> dict[str, Tuning]:
    """Choose C, class weighting and threshold of every part by cross-validation on the training part only.

    Each part's texts are split into `VALIDATION_FOLDS` folds by hash (fold 0 is the `is_validation` part); every
    setting of the grid gives an out-of-fold probability for every training text. The objective is the one the
    targets are stated in: spam F1 per LANGUAGE (mean over languages), not per part, because a part serves more
    than one language (short Latin-only or emoji-only fragments of the Chinese sets land in `other`, beside all
    of English). Parts are chosen one at a time, largest first, with the others held at their current choice,
    for two rounds (coordinate ascent; deterministic). Ties: threshold nearer 0.5, then smaller C.
    Cross-validation rather than one 20% validation slice: the English part has about a hundred spam texts per
    slice, so one slice moves F1 by a few points between neighbouring settings; five folds use every text.
    """
    say = progress or (lambda _message: None)
    languages = sorted({e.language for examples in by_part.values() for e in examples})
    oofs: dict[str, dict[tuple[float, str | None], np.ndarray]] = {}
    tunings: dict[str, Tuning] = {}
    for name, examples in by_part.items():
        say(f"part {name}: {VALIDATION_FOLDS}-fold cross-validation over {len(examples)} training texts")
        oof = _out_of_fold(examples, min_df, name)
        if oof is None:
            tunings[name] = Tuning(DEFAULT_TUNING["C"], DEFAULT_TUNING["class_weight"], DEFAULT_TUNING["threshold"],
                                   None, len(examples))
        else:
            oofs[name] = oof
    if not oofs:
        return tunings
    spam = {n: np.array([e.spam for e in by_part[n]], dtype=bool) for n in oofs}
    lang = {n: np.array([e.language for e in by_part[n]]) for n in oofs}

    def counts(name: str, predicted: np.ndarray) -> dict[str, np.ndarray]:
        y, lg = spam[name], lang[name]
        return {g: np.array([np.sum(y & predicted & (lg == g)), np.sum(~y & predicted & (lg == g)),
                             np.sum(y & ~predicted & (lg == g))]) for g in languages}

    # Start each part at its own best (F1 over its texts), then refine on the per-language objective.
    choice: dict[str, tuple[float, str | None, float]] = {}
    for name, oof in oofs.items():
        choice[name] = max(((C, cw, t) for (C, cw) in oof for t in THRESHOLDS),  # noqa: N806
                           key=lambda k, n=name: (round(_f1(spam[n], oofs[n][k[:2]] >= k[2]), 6),
                                                  -abs(k[2] - 0.5), -k[0]))
    order = sorted(oofs, key=lambda n: -len(by_part[n]))
    for _round in range(2):
        for name in order:
            fixed = {g: np.zeros(3) for g in languages}
            for other in order:
                if other != name:
                    C, cw, t = choice[other]  # noqa: N806
                    for g, c in counts(other, oofs[other][(C, cw)] >= t).items():
                        fixed[g] = fixed[g] + c
            best_key: tuple[float, float, float] | None = None
            for (C, cw), proba in oofs[name].items():  # noqa: N806
                for t in THRESHOLDS:
                    own = counts(name, proba >= t)
                    score = _language_f1({g: fixed[g] + own[g] for g in languages})
                    key = (round(score, 6), -abs(t - 0.5), -C)
                    if best_key is None or key > best_key:
                        best_key, choice[name] = key, (C, cw, t)
    total = {g: np.zeros(3) for g in languages}
    for name in oofs:
        C, cw, t = choice[name]  # noqa: N806
        total = {g: total[g] + c for g, c in counts(name, oofs[name][(C, cw)] >= t).items()}
    say("out-of-fold spam F1 by language at the chosen settings: " + ", ".join(
        f"{g} {_language_f1({g: c}):.4f}" for g, c in total.items()))
    for name in oofs:
        C, cw, t = choice[name]  # noqa: N806
        tunings[name] = Tuning(C, cw, t, round(_f1(spam[name], oofs[name][(C, cw)] >= t), 6), len(by_part[name]))
    return tunings


def fit_part(examples: Sequence[Example], tuning: Tuning, min_df: int = MIN_DF, part: str = "") -> tuple[Any, Any]:
    """Fit the part's pipeline on all of its training texts with the tuned settings."""
    vectorizer, classifier = make_pipeline(tuning.C, tuning.class_weight, min_df)
    x = vectorizer.fit_transform([part_input(part, e.text) for e in examples])
    classifier.fit(x, np.array([e.spam for e in examples], dtype=bool))
    return vectorizer, classifier


def scorer_error(model: MarketingModel, part: str, fitted: tuple[Any, Any], texts: Sequence[str]) -> float:
    """Largest |fast scorer - scikit-learn predict_proba| over `texts` (all routed to `part`)."""
    if not texts:
        return 0.0
    vectorizer, classifier = fitted
    reference = classifier.predict_proba(vectorizer.transform([part_input(part, t) for t in texts]))[:, 1]
    fast = np.array([model.probability(t) for t in texts])
    assert all(part_of(t) == part for t in texts) or len(model.parts) == 1
    return float(np.max(np.abs(fast - reference)))


def _file_digest(path: Any) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def train_model(corpus: Corpus, progress: Progress | None = None, min_df: int = MIN_DF) -> MarketingModel:
    """Tune and fit every part on the training side of the fixed split; check the fast scorer against sklearn."""
    say = progress or (lambda _message: None)
    train, test = split(corpus.examples)
    by_part: dict[str, list[Example]] = {name: [] for name in PARTS}
    for example in train:
        by_part[part_of(example.text)].append(example)
    fitted: dict[str, tuple[Any, Any, float, bool]] = {}
    info: dict[str, dict[str, Any]] = {}
    usable = {}
    for name in PARTS:
        examples = by_part[name]
        if len({e.spam for e in examples}) < 2:
            say(f"part {name}: {len(examples)} training texts, not both labels: skipped")
            continue
        usable[name] = examples
    tunings = tune_parts(usable, min_df, say)
    for name, examples in usable.items():
        tuning = tunings[name]
        say(f"part {name}: C={tuning.C:g} class_weight={tuning.class_weight} threshold={tuning.threshold:.3f} "
            f"out-of-fold F1={'n/a' if tuning.validation_f1 is None else f'{tuning.validation_f1:.4f}'}")
        vectorizer, classifier = fit_part(examples, tuning, min_df, name)
        fitted[name] = (vectorizer, classifier, tuning.threshold, name in SHAPE_MARKED_PARTS)
        info[name] = {**asdict(tuning), "train_texts": len(examples), "train_spam": sum(e.spam for e in examples),
                      "vocabulary": len(vectorizer.vocabulary_), "min_df": min_df, "ngram_range": list(NGRAM_RANGE),
                      "shape_markers": name in SHAPE_MARKED_PARTS,
                      "tuning": f"{VALIDATION_FOLDS}-fold cross-validation on the training part, "
                                "objective: mean per-language spam F1"}
    if not fitted:
        raise ValueError("no part has training texts with both labels: nothing to train")
    import sklearn

    meta = {
        "parts": info,
        "sklearn": sklearn.__version__,
        "data": {
            "sets": [{"set": s.name, "language": s.language, "file": s.path.name,
                      "sha256": _file_digest(s.path)} for s in corpus.sets],
            "rows": corpus.rows, "examples": len(corpus.examples), "duplicates": corpus.duplicates,
            "conflicts": corpus.conflicts, "empty": corpus.empty, "train": len(train), "test": len(test),
        },
    }
    model = MarketingModel.from_sklearn(fitted, meta)
    for name, (vectorizer, classifier, _threshold, _marked) in fitted.items():
        sample = [e.text for e in by_part[name] if is_validation(e.text)][:500]
        error = scorer_error(model, name, (vectorizer, classifier), sample)
        if error > MAX_SCORER_ERROR:
            raise AssertionError(f"part {name}: fast scorer differs from scikit-learn by {error:.3g}")
        model.meta["parts"][name]["scorer_max_error"] = float(f"{error:.3g}")
    return model
