"""Measure the shipped (or any) model on the held-out test part: quality, robustness, speed.

Everything here reads only the test side of the fixed split (`split.is_test`), which training never sees.
Figures are grouped by the language column of the data README, plus `all`.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clearcircle.signals.classifier.data import Corpus, Example
from clearcircle.signals.classifier.features import shape_marked
from clearcircle.signals.classifier.model import MarketingModel, part_of
from clearcircle.signals.classifier.obfuscate import obfuscate
from clearcircle.signals.classifier.split import split
from clearcircle.signals.text_normalize import normalize, normalize_text

__all__ = ["Confusion", "Rate", "Report", "Speed", "evaluate"]

POLICY_THRESHOLD = 0.5  # what the built-in pack's moments-marketing-volume rule compares text.marketing with


@dataclass(frozen=True)
class Confusion:
    """Spam is the positive class."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def of(cls, spam: Sequence[bool], predicted: Sequence[bool]) -> Confusion:
        tp = sum(1 for s, p in zip(spam, predicted, strict=True) if s and p)
        fp = sum(1 for s, p in zip(spam, predicted, strict=True) if not s and p)
        fn = sum(1 for s, p in zip(spam, predicted, strict=True) if s and not p)
        return cls(tp, fp, fn, len(spam) - tp - fp - fn)

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else None

    @property
    def fpr(self) -> float | None:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else None


@dataclass(frozen=True)
class Group:
    """One language (or `all`): quality at the tuned thresholds and at the policy's 0.5, and robustness."""

    name: str
    texts: int
    spam: int
    tuned: Confusion
    at_policy: Confusion
    clean: Confusion  # the same texts as `tuned`, listed again beside the obfuscated run for clarity
    obfuscated: Confusion
    routed: dict[str, int]  # model part -> texts of this group it scored (each with that part's threshold)


@dataclass(frozen=True)
class Rate:
    """One path's speed over the same texts: messages per wall-clock second and CPU time per message.

    Both are the best of a few rounds. On a shared machine the wall-clock figure falls when neighbours take
    the core; CPU time (`time.process_time`) counts only this process's own seconds, so 1e6 / cpu_us is the
    messages per second of one core actually given to it (still slowed by neighbours sharing the caches).
    """

    per_s: float
    cpu_us: float

    @property
    def per_cpu_s(self) -> float:
        return 1e6 / self.cpu_us if self.cpu_us else 0.0


@dataclass(frozen=True)
class Speed:
    """Single-message speed on one core, measured in one run over the same held-out texts."""

    scorer: Rate  # MarketingModel.probability on normalised text: the same input sklearn gets below
    whole: Rate  # MarketingModel.score on the text as written: normalise + shape marks + score
    sklearn_per_call: Rate  # vectorizer.transform([text]) + predict_proba, one message per call
    normalize: Rate  # normalize_text(original text), on its own (the normaliser's part of `whole`)
    mean_chars: float  # mean length of the normalised texts scored
    sklearn_texts: int
    max_abs_diff: float  # |fast scorer - sklearn predict_proba| over the sklearn_texts
    load: float  # the machine's 1-minute load average when the measurement ended


@dataclass
class Report:
    groups: list[Group]  # per language of the data README, then "all"
    sets: list[Group]  # per data set: where the errors come from
    speed: Speed | None
    seed: int
    test_texts: int
    train_texts: int
    normalizer_matches: bool
    obfuscated_changed: float  # share of test texts still different from the clean text after normalisation
    parts: dict[str, Any] = field(default_factory=dict)


def _group(name: str, examples: Sequence[Example], proba: Sequence[float], tuned: Sequence[bool],
           obfuscated: Sequence[bool]) -> Group:
    spam = [e.spam for e in examples]
    confusion = Confusion.of(spam, tuned)
    routed = dict(sorted(Counter(part_of(e.text) for e in examples).items()))
    return Group(name, len(examples), sum(spam), confusion, Confusion.of(spam, [p >= POLICY_THRESHOLD for p in proba]),
                 confusion, Confusion.of(spam, obfuscated), routed)


def _rate(fn: Callable[[str], Any], texts: Sequence[str], min_seconds: float, rounds: int = 3) -> Rate:
    """fn's speed over texts: the best of `rounds` rounds (as timeit does, so a busy neighbour on a shared
    machine does not decide the figure), each round repeating the list for at least min_seconds / rounds;
    wall-clock and CPU time are each taken from their best round."""
    if not texts:
        return Rate(0.0, 0.0)
    best, cpu_us = 0.0, math.inf
    for _ in range(rounds):
        calls = 0
        started, cpu_started = time.perf_counter(), time.process_time()
        while True:
            for text in texts:
                fn(text)
            calls += len(texts)
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds / rounds:
                break
        cpu_us = min(cpu_us, (time.process_time() - cpu_started) * 1e6 / calls)
        best = max(best, calls / elapsed)
    return Rate(best, cpu_us)


def measure_speed(model: MarketingModel, examples: Sequence[Example], sklearn_texts: int = 500,
                  min_seconds: float = 1.0) -> Speed:
    """The fast scorer beside scikit-learn's per-call predict_proba, on the same texts, in the same run."""
    texts = [e.text for e in examples]
    originals = [e.original for e in examples]
    pipelines = {name: model.to_sklearn(name) for name in model.parts}

    def sklearn_proba(text: str) -> float:
        name = part_of(text) if part_of(text) in pipelines else next(iter(pipelines))
        vectorizer, classifier = pipelines[name]
        text = shape_marked(text) if model.parts[name].shape_markers else text
        return float(classifier.predict_proba(vectorizer.transform([text]))[0, 1])

    sample = texts[:: max(1, len(texts) // sklearn_texts)][:sklearn_texts]  # spread over every set, same mix
    reference = [sklearn_proba(t) for t in sample]
    diff = max((abs(model.probability(t) - r) for t, r in zip(sample, reference, strict=True)), default=0.0)
    return Speed(
        scorer=_rate(model.probability, texts, min_seconds),
        whole=_rate(model.score, originals, min_seconds),
        sklearn_per_call=_rate(sklearn_proba, sample, 0.0),  # one pass per round: it is slow enough
        normalize=_rate(normalize_text, originals, min_seconds),
        mean_chars=float(np.mean([len(t) for t in texts])) if texts else 0.0,
        sklearn_texts=len(sample),
        max_abs_diff=diff,
        load=os.getloadavg()[0],
    )


def evaluate(model: MarketingModel, corpus: Corpus, seed: int = 0, speed: bool = True,
             sklearn_texts: int = 500, min_seconds: float = 1.0) -> Report:
    """Quality per language and overall, robustness to `obfuscate`, and speed, on the held-out part."""
    train, test = split(corpus.examples)
    proba = [model.probability(e.text) for e in test]
    tuned = [p >= model.threshold(e.text) for e, p in zip(test, proba, strict=True)]
    obfuscated_texts = [normalize(obfuscate(e.original, seed)).text for e in test]
    obfuscated = [model.is_marketing(t) for t in obfuscated_texts]
    # How much of the obfuscation the normaliser does NOT undo: the part the n-grams themselves must absorb.
    changed = sum(o != e.text for o, e in zip(obfuscated_texts, test, strict=True)) / len(test) if test else 0.0

    def group(name: str, keep: Callable[[Example], bool]) -> Group:
        idx = [i for i, e in enumerate(test) if keep(e)]
        return _group(name, [test[i] for i in idx], [proba[i] for i in idx], [tuned[i] for i in idx],
                      [obfuscated[i] for i in idx])

    groups = [group(lang, lambda e, lang=lang: e.language == lang) for lang in dict.fromkeys(e.language for e in test)]
    groups.append(group("all", lambda _e: True))
    by_set = [group(name, lambda e, name=name: e.set == name) for name in dict.fromkeys(e.set for e in test)]
    return Report(
        groups=groups,
        sets=by_set,
        speed=measure_speed(model, test, sklearn_texts, min_seconds) if speed and test else None,
        seed=seed,
        test_texts=len(test),
        train_texts=len(train),
        normalizer_matches=model.normalizer_matches(),
        obfuscated_changed=changed,
        parts=model.meta.get("parts", {}),
    )
