"""The batch path end to end: replay generated events into a store, `detect`, findings persisted, cases opened,
labels applied; later events read the findings as graph.* signals. Plus the CLI's refusals."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from clearcircle.cli.main import app
from clearcircle.detectors.events import generate_events
from clearcircle.store import tables as t
from clearcircle.store.repository import Store

FINDING_KEYS = {"detector", "accounts", "targets", "score", "evidence"}


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLEARCIRCLE_HASH_KEY", "a-key-for-the-detector-tests")
    for name in ("CLEARCIRCLE_DB_URL", "CLEARCIRCLE_PACK", "CLEARCIRCLE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def decide(db_url, event):
    result = run("decide", json.dumps(event), "--db", db_url)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_replay_detect_persists_findings_opens_cases_and_feeds_signals(db_url, tmp_path):
    truth = generate_events(tmp_path / "events.jsonl")
    assert run("replay", tmp_path / "events.jsonl", "--db", db_url).exit_code == 0
    result = run("detect", "--db", db_url, "--out", tmp_path / "findings.jsonl")
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (tmp_path / "findings.jsonl").read_text().splitlines()]
    assert lines and all(set(x) == FINDING_KEYS for x in lines)
    by = {x["detector"]: x for x in lines}
    assert set(by["lockstep"]["accounts"]) == truth.lockstep_accounts
    assert set(by["lockstep"]["targets"]) == truth.lockstep_targets  # pub-30's bought followers all left
    assert by["lockstep"]["evidence"]["undone_targets"] == ["pub-30"]
    assert by["lockstep"]["evidence"]["still_following"]["pub-31"] == 7
    assert set(by["mlm"]["accounts"]) == truth.mlm_members and by["mlm"]["targets"] == ["mlm-0"]
    assert set(by["evasion"]["accounts"]) == truth.evaders and by["evasion"]["targets"] == ["seller-0"]
    bursts = {x["targets"][0]: x for x in lines if x["detector"] == "share_burst"}
    assert set(bursts) == truth.burst_items  # post-news was as fast, but nothing induced it
    assert bursts["post-promo"]["accounts"] == ["shop-1"]
    assert (bursts["post-promo"]["evidence"]["trigger"], bursts["post-promo"]["evidence"]["trigger_post"]) == (
        "reward_post", "post-prize")
    assert bursts["post-unlock"]["evidence"]["trigger"] == "induced_text"
    assert by["friend_spam"]["accounts"] == ["spam-0"]  # not the sociable u-0, not the less liked u-1
    assert len(lines) == 6  # the brand's one-level programme, the relative, ordinary shares: nothing

    store = Store(db_url)
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(t.findings.c.detector)).scalars().all()
        cases = conn.execute(sa.select(t.cases.c.account, t.cases.c.source, t.cases.c.rules)).all()
    assert sorted(stored) == sorted(x["detector"] for x in lines)
    assert {(c.account, c.source) for c in cases if c.source == "detector"} == {
        ("mlm-0", "detector"), ("seller-0b", "detector"), ("shop-1", "detector"), ("shop-2", "detector"),
        ("spam-0", "detector"), (by["lockstep"]["targets"][0], "detector")}
    assert "bought_follower" in store.account_state("buy-3").labels
    assert "follower_fraud" in store.account_state("pub-31").labels
    assert "mlm_organiser" in store.account_state("mlm-0").labels
    store.close()
    assert run("audit", "verify", "--db", db_url).exit_code == 0  # labels and cases went through the audit chain

    # detect again: the same groups, no second case within the week
    assert run("detect", "--db", db_url).exit_code == 0
    with Store(db_url).engine.connect() as conn:
        again = conn.execute(sa.select(sa.func.count()).select_from(t.cases).where(t.cases.c.source == "detector"))
        assert again.scalar_one() == 6

    # the real-time path reads the latest run
    later = decide(db_url, {"id": "late-1", "type": "post_created", "occurred_at": "2026-03-12T10:00:00+00:00",
                            "actor": "seller-0c", "body": {"surface": "moments", "text": "hello again"}})
    assert later["signals"]["graph.evasion_of"] == "seller-0"
    assert "graph-ban-evasion" in later["rules"]
    # an account created after the run, sharing a payment account with an evader, is caught as well
    decide(db_url, {"id": "late-2", "type": "account_registered", "occurred_at": "2026-03-12T11:00:00+00:00",
                    "actor": "seller-0d", "body": {"account_type": "personal", "payment_id": "pay-77"}})
    newer = decide(db_url, {"id": "late-3", "type": "follow", "occurred_at": "2026-03-12T12:00:00+00:00",
                            "actor": "seller-0d", "body": {"target": "pub-1"}})
    assert newer["signals"]["graph.evasion_of"] == "seller-0"
    # an ordinary account is not
    plain = decide(db_url, {"id": "late-4", "type": "follow", "occurred_at": "2026-03-12T12:00:00+00:00",
                            "actor": "u-7", "body": {"target": "pub-2"}})
    assert plain["signals"].get("graph.evasion_of", "") == "" and "graph-ban-evasion" not in plain["rules"]
    pushed = decide(db_url, {"id": "late-5", "type": "message_push", "occurred_at": "2026-03-12T12:00:00+00:00",
                             "actor": "pub-31", "body": {"audience": 100}})
    assert pushed["signals"]["graph.follower_fraud"] == pytest.approx(by["lockstep"]["score"] * 7 / 15, rel=1e-5)
    assert "graph-follower-fraud" in pushed["rules"]
    undone = decide(db_url, {"id": "late-6", "type": "message_push", "occurred_at": "2026-03-12T12:00:00+00:00",
                             "actor": "pub-30", "body": {"audience": 100}})
    assert undone["signals"]["graph.follower_fraud"] == 0 and "graph-follower-fraud" not in undone["rules"]
    # friend spam: slowed down (a day without adds, no strike), the sociable person is not
    spam = decide(db_url, {"id": "late-7", "type": "friend_request", "occurred_at": "2026-03-12T12:00:00+00:00",
                           "actor": "spam-0", "body": {"target": "u-300"}})
    assert spam["signals"]["graph.friend_spam"] == 56 and "graph-friend-spam-slow-down" in spam["rules"]
    assert "graph-friend-spam-restrict-adds" not in spam["rules"] and spam["verdict"] != "ban"
    social = decide(db_url, {"id": "late-8", "type": "friend_request", "occurred_at": "2026-03-12T12:00:00+00:00",
                             "actor": "u-1", "body": {"target": "u-300"}})
    assert social["signals"]["graph.friend_spam"] == 0 and not any("friend-spam" in r for r in social["rules"])


def test_detect_since_leaves_out_older_events(sqlite_url, tmp_path):
    generate_events(tmp_path / "events.jsonl")
    assert run("replay", tmp_path / "events.jsonl", "--db", sqlite_url).exit_code == 0
    result = run("detect", "--db", sqlite_url, "--since", "2026-03-09", "--out", tmp_path / "f.jsonl",
                 "--work", tmp_path / "edges")
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "edges").iterdir()} == {
        "follows.parquet", "unfollows.parquet", "referrals.parquet", "shares.parquet", "posts.parquet",
        "friend_requests.parquet", "links.parquet", "accounts.parquet"}
    detectors = {json.loads(x)["detector"] for x in (tmp_path / "f.jsonl").read_text().splitlines()}
    assert not detectors & {"lockstep", "share_burst", "friend_spam"}  # all before the 9th
    assert "evasion" in detectors  # identity links and bans are always whole


@pytest.mark.parametrize(("args", "message"), [
    (["--engine", "hadoop"], "unknown engine"),
    (["--master", "spark://x:7077"], "--master is for --engine spark"),
    (["--since", "last tuesday"], "not an RFC 3339 time"),
])
def test_detect_refuses_bad_options_with_a_message(sqlite_url, args, message):
    result = run("detect", "--db", sqlite_url, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_evaluate_graph_prints_precision_and_recall_per_detector():
    result = run("evaluate-graph", "--edges", 100_000)
    assert result.exit_code == 0, result.output
    for name in ("lockstep", "mlm", "evasion", "share_burst", "friend_spam"):
        assert name in result.output
    assert "NOT met" not in result.output


def test_bench_graph_prints_duckdb_and_networkx():
    result = run("bench-graph", "--edges", 30_000, "--networkx-edges", 30_000, "--no-spark")
    assert result.exit_code == 0, result.output
    assert "duckdb" in result.output and "networkx" in result.output


@pytest.mark.parametrize(("categories", "flags"), [
    (["induced_share", "contact"], (True, False)),
    (["reward"], (False, True)),  # a pack with a reward list of its own
    (["commercial"], (False, False)),
    (None, (False, False)),  # the decision did not read the text
])
def test_post_flags_come_from_the_stored_decision(categories, flags):
    from clearcircle.detectors.export import post_flags

    signals = {} if categories is None else {"text.categories": categories}
    assert post_flags(json.dumps({"signals": signals})) == flags
    assert post_flags(None) == (False, False)  # a post never decided
