"""The marketing classifier: data loading, the fixed split, the fast scorer, obfuscation, the shipped model,
the `text.marketing` signal and the train/evaluate commands.

Every message here is written for the test (or generated from word lists written here); no row of the real
data sets is copied. Training in these tests uses tiny synthetic sets; the shipped model is only loaded.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clearcircle.signals.classifier import DEFAULT_MODEL_PATH, MarketingModel, shipped_model
from clearcircle.signals.classifier.data import DataError, default_data_dir, load_corpus, read_sets
from clearcircle.signals.classifier.features import MARK_BASE, digit_run_class, length_class, shape_marked
from clearcircle.signals.classifier.model import part_of
from clearcircle.signals.classifier.obfuscate import obfuscate
from clearcircle.signals.classifier.split import VALIDATION_FOLDS, is_test, is_validation, split, validation_fold
from clearcircle.signals.classifier.train import make_pipeline, tune_parts
from clearcircle.signals.text_normalize import normalize

# --- synthetic messages, from word lists written for these tests -------------------------------------------

EN_SPAM = ["free", "prize", "winner", "claim", "cash", "offer", "call now", "discount", "txt STOP", "urgent",
           "bonus", "voucher", "reply YES", "limited time", "guaranteed"]
EN_HAM = ["dinner", "tonight", "mum", "meeting", "home", "later", "sorry", "love you", "the bus", "homework",
          "see you", "running late", "football", "birthday", "thanks"]
ZH_SPAM = ["加微信", "优惠", "代理招募", "免费领取", "点击链接", "低息贷款", "全场特价", "扫码", "返现", "限时抢购",
           "咨询热线", "包邮", "日赚", "招代理", "私聊"]
ZH_HAM = ["今天", "吃饭", "回家", "朋友", "周末", "电影", "下班", "孩子", "天气", "公园", "散步", "生日快乐",
          "晚安", "谢谢", "妈妈"]


def message(rng: random.Random, spam: bool, chinese: bool) -> str:
    words = (ZH_SPAM if spam else ZH_HAM) if chinese else (EN_SPAM if spam else EN_HAM)
    mixed = (ZH_HAM if spam else ZH_SPAM) if chinese else (EN_HAM if spam else EN_SPAM)
    picked = rng.sample(words, rng.randint(2, 4)) + ([rng.choice(mixed)] if rng.random() < 0.3 else [])
    rng.shuffle(picked)
    tail = f" {rng.randint(100, 99999)}" if spam and rng.random() < 0.6 else ""
    return ("，" if chinese else " ").join(picked) + tail


def write_set(folder: Path, name: str, rows: list[tuple[str, str]]) -> None:
    (folder / name).mkdir(parents=True, exist_ok=True)
    lines = ["label\ttext"] + [f"{label}\t{text}" for label, text in rows]
    (folder / name / "messages.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_readme(folder: Path, sets: list[tuple[str, str]]) -> None:
    rows = "\n".join(f"| {name} | `{name}/messages.tsv` | {lang} | test set | n | n |" for name, lang in sets)
    (folder / "README.md").write_text(
        "# Data\n\nSome prose before the table.\n\n| set | file | language | what it is | rows | spam |\n"
        f"|---|---|---|---|---|---|\n{rows}\n\nProse after the table.\n", encoding="utf-8")


def synthetic_rows(seed: int, n: int, chinese: bool) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        spam = i % 3 == 0
        rows.append(("spam" if spam else "ham", message(rng, spam, chinese)))
    return rows


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    write_set(folder, "en-a", synthetic_rows(1, 150, chinese=False))
    write_set(folder, "zh-b", synthetic_rows(2, 150, chinese=True))
    write_readme(folder, [("en-a", "en"), ("zh-b", "zh")])
    return folder


# --- loader -------------------------------------------------------------------------------------------------


def test_loader_reads_the_readme_table_and_picks_up_a_new_set(tmp_path: Path) -> None:
    write_set(tmp_path, "one", [("spam", "win a free prize now"), ("ham", "see you at dinner")])
    write_set(tmp_path, "two", [("spam", "加微信领取优惠"), ("ham", "今天回家吃饭")])
    write_readme(tmp_path, [("one", "en"), ("two", "zh")])
    assert [(s.name, s.language) for s in read_sets(tmp_path)] == [("one", "en"), ("two", "zh")]
    corpus = load_corpus(tmp_path)
    assert {(e.set, e.language, e.spam) for e in corpus.examples} == {
        ("one", "en", True), ("one", "en", False), ("two", "zh", True), ("two", "zh", False)}
    assert corpus.rows == 4

    # A third set added to the table only (no code change) is read.
    write_set(tmp_path, "three", [("spam", "代理招募 日赚500"), ("ham", "周末一起看电影")])
    write_readme(tmp_path, [("one", "en"), ("two", "zh"), ("three", "zh")])
    corpus = load_corpus(tmp_path)
    assert [s.name for s in corpus.sets] == ["one", "two", "three"]
    assert sum(e.set == "three" for e in corpus.examples) == 2
    assert corpus.rows == 6


def test_loader_refuses_malformed_files_and_finds_the_data_folder(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write_set(tmp_path, "bad", [("maybe", "what label is this")])
    write_readme(tmp_path, [("bad", "en")])
    with pytest.raises(DataError, match=r"messages.tsv:2"):
        load_corpus(tmp_path)
    (tmp_path / "README.md").write_text("# no table here\n", encoding="utf-8")
    with pytest.raises(DataError, match="no table"):
        load_corpus(tmp_path)
    monkeypatch.setenv("CLEARCIRCLE_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("CLEARCIRCLE_DATA")
    assert default_data_dir() == (Path(__file__).resolve().parents[1].parent / "shared" / "data").resolve()


# --- dedup and split ----------------------------------------------------------------------------------------


def test_duplicates_collapse_across_sets_and_conflicts_are_dropped(tmp_path: Path) -> None:
    write_set(tmp_path, "a", [("spam", "Free Prize Now"), ("ham", "dinner at home"), ("spam", "call me maybe")])
    # Same texts written differently (case, full width, spacing): one text each after normalisation.
    write_set(tmp_path, "b", [("spam", "ＦＲＥＥ  prize now"), ("ham", "Dinner  at\u3000home"),
                              ("ham", "call me maybe")])
    write_readme(tmp_path, [("a", "en"), ("b", "en")])
    corpus = load_corpus(tmp_path)
    texts = [e.text for e in corpus.examples]
    assert len(texts) == len(set(texts)) == 2  # "call me maybe" carried both labels: dropped
    assert corpus.conflicts == 1
    assert {e.set for e in corpus.examples} == {"a"}  # the first occurrence wins


def test_split_never_puts_a_text_and_its_duplicate_on_both_sides(tmp_path: Path) -> None:
    rng = random.Random(7)
    base = [message(rng, i % 2 == 0, chinese=i % 3 == 0) + f" {i}" for i in range(400)]
    variants = ["\u200b".join(t.upper()) for t in base]  # each normalises like its original
    write_set(tmp_path, "a", [("spam" if i % 2 == 0 else "ham", t) for i, t in enumerate(base)])
    write_set(tmp_path, "b", [("spam" if i % 2 == 0 else "ham", t) for i, t in enumerate(variants)])
    write_readme(tmp_path, [("a", "en"), ("b", "zh")])
    corpus = load_corpus(tmp_path)
    assert len(corpus.examples) == 400
    train, test = split(corpus.examples)
    assert 40 < len(test) < 130  # ~20%
    assert not {e.text for e in train} & {e.text for e in test}
    for original, variant in zip(base, variants, strict=True):
        assert is_test(normalize(original).text) == is_test(normalize(variant).text)


def test_split_is_the_same_in_another_process_with_another_hash_seed() -> None:
    texts = [f"message number {i} 第{i}条" for i in range(300)]
    here = "".join("1" if is_test(t) else "0" for t in texts)
    code = ("from clearcircle.signals.classifier.split import is_test\n"
            "print(''.join('1' if is_test(f'message number {i} 第{i}条') else '0' for i in range(300)))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == here
    assert 0 < here.count("1") < 300


def test_validation_folds_cover_training_and_fold_zero_is_the_validation_slice() -> None:
    texts = [f"训练消息 {i} message" for i in range(1000)]
    folds = [validation_fold(t) for t in texts]
    assert set(folds) == set(range(VALIDATION_FOLDS))
    assert all((f == 0) == is_validation(t) for f, t in zip(folds, texts, strict=True))


def test_tuning_uses_only_the_texts_it_is_given_and_picks_from_the_grid(tiny_data: Path) -> None:
    train, _test = split(load_corpus(tiny_data).examples)
    by_part: dict[str, list] = {"cjk": [], "other": []}
    for example in train:
        by_part[part_of(example.text)].append(example)
    tunings = tune_parts(by_part, min_df=1)
    assert set(tunings) == {"cjk", "other"}
    for tuning in tunings.values():
        assert tuning.validation_f1 is not None and tuning.validation_f1 > 0.9  # synthetic classes separate
        assert 0.1 <= tuning.threshold <= 0.9
    assert tunings == tune_parts(by_part, min_df=1)  # deterministic


# --- fast scorer --------------------------------------------------------------------------------------------


def fit_synthetic(seed: int = 3, marked: bool = False) -> tuple[dict, list[str]]:
    """Two small sklearn pipelines (one per part) on synthetic data, and held-out texts of both scripts; with
    `marked` the cjk part reads shape-marked texts, as the shipped model's does."""
    rng = random.Random(seed)
    fitted = {}
    for name, chinese in (("cjk", True), ("other", False)):
        rows = [(i % 2 == 0, message(rng, i % 2 == 0, chinese)) for i in range(300)]
        vectorizer, classifier = make_pipeline(C=3.0, class_weight="balanced", min_df=1)
        mark = shape_marked if marked and chinese else str
        x = vectorizer.fit_transform([mark(normalize(t).text) for _s, t in rows])
        classifier.fit(x, np.array([s for s, _t in rows]))
        fitted[name] = (vectorizer, classifier, 0.5, marked and chinese)
    held_out = [normalize(message(rng, rng.random() < 0.5, rng.random() < 0.5)).text for _ in range(300)]
    held_out += ["", "a", "zz  qq\t\tww", "完全没见过的字", "x" * 500, "加微信  优惠"]
    return fitted, held_out


@pytest.mark.parametrize("marked", [False, True], ids=["plain", "shape-marked"])
def test_fast_scorer_equals_sklearn_predict_proba(marked: bool, tmp_path: Path) -> None:
    fitted, held_out = fit_synthetic(marked=marked)
    model = MarketingModel.from_sklearn(fitted, {"parts": {}})
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = MarketingModel.load(path)
    assert loaded.parts["cjk"].shape_markers is marked and loaded.parts["other"].shape_markers is False
    worst = 0.0
    for text in held_out:
        vectorizer, classifier, _, text_marked = fitted[part_of(text)]
        features = shape_marked(text) if text_marked else text
        expected = classifier.predict_proba(vectorizer.transform([features]))[0, 1]
        worst = max(worst, abs(model.probability(text) - expected), abs(loaded.probability(text) - expected))
    assert worst <= 1e-12
    # The synthetic classes are separable: the scorer is not trivially constant.
    assert loaded.score("免费领取，加微信，限时抢购") > 0.5 > loaded.score("今天回家吃饭，周末看电影")
    # `score` normalises without the offset map: same value as scoring `normalize(text).text`
    for raw in ("免 费 领 取，加​薇信", "FREE  prize!!! call now", "壹叁捌 一二三四 五六七八 好好好好好", "", "  "):
        assert loaded.score(raw) == loaded.probability(normalize(raw).text)


TRICKY_CHARS = "ab 加微信\t\n\u3000😀𠀀\U0010ffff\ufeff。，xX1 "


@pytest.mark.parametrize("ngram_range", [(1, 3), (2, 5), (1, 1), (3, 4)])
def test_hash_table_scorer_matches_sklearn_on_any_ngram_range_and_character(ngram_range: tuple[int, int],
                                                                            tmp_path: Path) -> None:
    """The native scorer's keys: packed code points up to 3 characters, a verified hash beyond; astral
    characters, whitespace runs, repeats, texts shorter than min_n and characters never seen in training."""
    rng = random.Random(7)
    rows = [(i % 2 == 0, "".join(rng.choice(TRICKY_CHARS) for _ in range(rng.randint(1, 25)))) for i in range(400)]
    vectorizer, classifier = make_pipeline(C=10.0, class_weight=None, min_df=1, ngram_range=ngram_range)
    classifier.fit(vectorizer.fit_transform([t for _s, t in rows]), np.array([s for s, _t in rows]))
    assert max(map(len, vectorizer.get_feature_names_out())) == ngram_range[1]
    model = MarketingModel.from_sklearn({"other": (vectorizer, classifier, 0.5)}, {"parts": {}})
    model.save(tmp_path / "m.npz")
    loaded = MarketingModel.load(tmp_path / "m.npz")
    held_out = ["".join(rng.choice(TRICKY_CHARS + "zq\ud800\x00") for _ in range(rng.randint(0, 40)))
                for _ in range(300)] + ["", "a", "aaaaaaaaaaaa", "a  \t b", "\ud800\udc00"]
    probabilities = []
    for text in held_out:
        expected = classifier.predict_proba(vectorizer.transform([text]))[0, 1]
        got = (model.probability(text), loaded.probability(text))
        assert abs(got[0] - expected) <= 1e-12 and abs(got[1] - expected) <= 1e-12, (text, got, expected)
        probabilities.append(expected)
    assert max(probabilities) - min(probabilities) > 0.1  # the texts do not all score alike


NO_CACHE_FOLDER = """
import numba.core.caching, numpy as np
numba.core.caching.CacheImpl._locator_classes = []  # as if no folder were writable
from clearcircle.signals.classifier import ngram_kernels
from clearcircle.signals.classifier.ngram_table import NgramTable
table = NgramTable(["a", "ab", "b", "abc"], np.array([1.0, 2.0, 4.0, 8.0]), np.ones(4), (1, 3))
print(ngram_kernels.CACHED, table.sums("abab"))
"""


def test_kernels_compile_in_memory_when_no_cache_folder_is_writable() -> None:
    """numba raises on `cache=True` when it has nowhere to write (a read-only install): the model must still
    load. Distinct n-grams of "abab": a, ab, b (ba, aba, bab are not in the vocabulary)."""
    done = subprocess.run([sys.executable, "-c", NO_CACHE_FOLDER], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "(7.0,", "3.0)"]


def test_save_is_deterministic(tmp_path: Path) -> None:
    fitted, _ = fit_synthetic()
    for name in ("a.npz", "b.npz"):
        MarketingModel.from_sklearn(fitted, {"parts": {}}).save(tmp_path / name)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_shape_marks_classify_length_and_number_runs() -> None:
    lengths = (0, 1, 2, 3, 6, 7, 14, 15, 510, 511, 5000)
    assert [length_class("x" * n) for n in lengths] == [0, 1, 1, 2, 2, 3, 3, 4, 8, 9, 9]
    numbers = ["你好", "只要35元", "验证码 482913", "QQ 12345678", "电话13812345678", "卡号6222020200090005097",
               "12 34 56"]  # spaces end a run
    assert [digit_run_class(t) for t in numbers] == [0, 1, 2, 3, 4, 5, 1]
    marked = shape_marked("电话13812345678")
    assert marked[2:-1] == "电话13812345678" and marked[0] == marked[-1] != marked[1]
    assert all(ord(c) >= MARK_BASE for c in (marked[0], marked[1]))
    # texts of one shape share marks, texts of another do not
    assert shape_marked("加微信13912345678")[:2] == marked[:2] != shape_marked("加微信")[:2]


def test_a_model_file_written_before_shape_marks_still_loads(tmp_path: Path) -> None:
    fitted, held_out = fit_synthetic()
    model = MarketingModel.from_sklearn(fitted, {"parts": {}})
    model.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays = {k: (v[:4] if k.endswith(".scalars") else v) for k, v in arrays.items()}  # the old 4 scalars
    np.savez_compressed(tmp_path / "old.npz", **arrays)
    old = MarketingModel.load(tmp_path / "old.npz")
    assert not any(p.shape_markers for p in old.parts.values())
    assert [old.probability(t) for t in held_out] == [model.probability(t) for t in held_out]


def test_routing_by_script() -> None:
    assert part_of("今天回家吃饭") == "cjk"
    assert part_of("2952191783口") == "cjk"  # a number and one ideograph: still Chinese
    assert part_of("see you at dinner tonight, bring the cake and some candles 心") == "other"  # one stray one
    assert part_of("hello") == "other"


# --- obfuscation ------------------------------------------------------------------------------------------


def test_obfuscate_is_deterministic_and_changes_the_text() -> None:
    texts = ["加微信领取优惠券，电话13800138000", "Win a free prize, call 0800 123 456 now", "今天天气不错", "ok",
             "周末一起去公园散步吧"]
    for text in texts:
        first = obfuscate(text, 1)
        assert first == obfuscate(text, 1)
        assert first != text
    assert any(obfuscate(t, 1) != obfuscate(t, 2) for t in texts)
    # The contact word is always swapped when present.
    assert all("微信" not in obfuscate("加微信领取优惠券", seed) for seed in range(20))


# --- the shipped model and the signal -----------------------------------------------------------------------


def test_shipped_model_scores_marketing_above_a_friend_post() -> None:
    assert DEFAULT_MODEL_PATH.stat().st_size <= 20_000_000
    model = shipped_model()
    assert model is shipped_model()  # loaded once
    ad = "加微信领取优惠券！全场特价包邮，招代理日赚500，点击链接咨询热线13800138000"
    friend = "今天和朋友去公园散步，天气很好，晚上回家给孩子做饭"
    assert model.score(ad) >= 0.5 > model.score(friend)
    en_ad = "URGENT! You have won a cash prize of 2000 pounds. Call 09001234567 now to claim, T&C apply"
    en_friend = "Running a bit late, will be home for dinner around seven. Love you"
    assert model.score(en_ad) >= 0.5 > model.score(en_friend)
    # Obfuscating the ad keeps it marketing.
    assert model.score(obfuscate(ad, 0)) >= 0.5


def test_text_marketing_is_recorded_in_a_post_decision(tmp_path: Path) -> None:
    from clearcircle.config import Settings
    from clearcircle.events import parse_event
    from clearcircle.service import open_service
    from clearcircle.signals.registry import REGISTRY

    svc = open_service(Settings(db_url=f"sqlite:///{tmp_path}/x.db", key_file=tmp_path / "k"))
    try:
        assert REGISTRY["text.marketing"].version == 2 and REGISTRY["text.marketing"].type is float

        def post(i: int, text: str) -> object:
            return parse_event({"id": f"cls-{i}", "type": "post_created", "occurred_at": "2026-03-02T09:14:05+08:00",
                                "actor": "u-cls", "body": {"surface": "moments", "text": text}})

        ad = "加微信领取优惠券！全场特价包邮，招代理日赚500，点击链接咨询热线13800138000"
        friend = "今天和朋友去公园散步，天气很好"
        # the rule reading text.marketing (moments-marketing-volume) looks at it from the 6th post of a day on
        warm_up = [post(100 + i, friend) for i in range(5)]
        decisions = [o.decision for o in svc.pipeline.submit([*warm_up, post(1, ad), post(2, friend)])][-2:]
    finally:
        svc.close()
    ad_score, friend_score = (d["signals"]["text.marketing"] for d in decisions)
    assert isinstance(ad_score, float) and ad_score >= 0.5 > friend_score


# --- commands -----------------------------------------------------------------------------------------------


def test_train_and_evaluate_commands_on_a_tiny_data_folder(tiny_data: Path, tmp_path: Path) -> None:
    from clearcircle.cli.main import app

    runner = CliRunner()
    out = tmp_path / "model.npz"
    result = runner.invoke(app, ["train", "--data", str(tiny_data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "wrote" in result.output
    first = out.read_bytes()
    assert runner.invoke(app, ["train", "--data", str(tiny_data), "--out", str(out)]).exit_code == 0
    assert out.read_bytes() == first  # same data, same file

    result = runner.invoke(app, ["evaluate", "--data", str(tiny_data), "--model", str(out), "--sklearn-texts", "20"])
    assert result.exit_code == 0, result.output
    for expected in ("precision", "recall", "F1", "TP", "FP", "spam recall obfuscated", "ham FPR obfuscated",
                     "messages/s", "en", "zh", "all"):
        assert expected in result.output, expected

    result = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "nowhere"), "--model", str(out)])
    assert result.exit_code == 2
