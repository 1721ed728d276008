"""One detector code, two engines: every detector gives identical findings on DuckDB and on Spark (local mode).

One SparkSession for the module (starting the JVM is the slow part); the graph is the generator's smallest.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clearcircle.detectors import friend_spam, lockstep, shares
from clearcircle.detectors.engine import DuckDBEngine, SparkEngine
from clearcircle.detectors.generate import generate_graph
from clearcircle.detectors.run import DETECTORS, load_tables
from clearcircle.store.findings import roles_of


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graph")
    return folder, generate_graph(60_000, folder, seed=11)


@pytest.fixture(scope="module")
def spark():
    engine = SparkEngine("local[2]", partitions=2)
    yield engine
    engine.close()


@pytest.mark.parametrize("name", list(DETECTORS))
def test_duckdb_and_spark_give_identical_findings(name, graph, spark):
    folder, _truth = graph
    det = DETECTORS[name]
    duck = DuckDBEngine()
    load_tables(duck, folder, det.tables)
    expected = det.fn(duck)
    duck.close()
    load_tables(spark, folder, det.tables)
    got = det.fn(spark)
    assert expected, f"{name} found nothing: the comparison would prove nothing"
    assert got == expected


def test_spark_reads_the_same_tables_as_duckdb(graph, spark):
    folder, truth = graph
    load_tables(spark, folder, ("follows",))
    assert spark.rows("SELECT COUNT(*) FROM follows")[0][0] == truth.sizes["follows"]


# -- hand-made cases, each on both engines: the semantics of unfollows, trigger links and friend spam ----------

H, M, D = 3_600_000, 60_000, 86_400_000
T0 = 1_772_323_200_000  # 2026-03-01T00:00:00Z


def _write(path, **cols):
    pq.write_table(pa.table(cols), path)


def _engine(kind, spark):
    return DuckDBEngine() if kind == "duckdb" else spark


def _lockstep_with_unfollows(folder):
    """12 accounts follow 6 targets in bursts; later all 12 unfollow pub-0, 6 unfollow pub-1, and one of those
    6 follows pub-1 again."""
    fol, unf = [], []
    for t in range(6):
        start = T0 + (24 * (t + 1) + 10) * H
        fol += [(f"buy-{a}", f"pub-{t}", start + a * M) for a in range(12)]
        fol += [(f"u-{t}-{i}", f"pub-{t}", T0 + i * 7 * H) for i in range(30)]  # a slow baseline
    later = T0 + 20 * D
    unf += [(f"buy-{a}", "pub-0", later + a * M) for a in range(12)]
    unf += [(f"buy-{a}", "pub-1", later + a * M) for a in range(6)]
    fol.append(("buy-0", "pub-1", later + H))  # followed again: still following
    for name, rows in (("follows", fol), ("unfollows", unf)):
        src, dst, ts = zip(*rows, strict=True)
        _write(folder / f"{name}.parquet", src=list(src), dst=list(dst), ts=list(ts))


@pytest.mark.parametrize("kind", ["duckdb", "spark"])
def test_unfollows_keep_the_lockstep_but_undo_the_inflation(tmp_path, kind, spark):
    _lockstep_with_unfollows(tmp_path)
    engine = _engine(kind, spark)
    load_tables(engine, tmp_path, ("follows", "unfollows"))
    found = lockstep.detect(engine)
    assert len(found) == 1
    f = found[0]
    assert set(f.accounts) == {f"buy-{a}" for a in range(12)}  # the lockstep stays evidence
    assert set(f.targets) == {f"pub-{t}" for t in range(1, 6)}  # pub-0: nobody still follows it
    assert f.evidence["undone_targets"] == ["pub-0"]
    assert f.evidence["bought"]["pub-1"] == 12 and f.evidence["still_following"]["pub-1"] == 7
    assert f.evidence["still_following"]["pub-2"] == 12
    # the target's graph.follower_fraud counts only followers still following
    scores = {r.account: r.score for r in roles_of(f) if r.role == "target"}
    assert scores["pub-1"] == pytest.approx(f.score * 7 / 12) and scores["pub-2"] == pytest.approx(f.score)


def _bursts(folder):
    """Five items each shared by 40 accounts in 20 minutes, straight from the source; only two are linked to
    a trigger: `own` (its own text induces sharing) and `after` (its owner's reward post 2 hours before)."""
    shares, posts = [], []
    owners = {"own": "o1", "after": "o2", "stale": "o3", "later": "o4", "news": "o5"}
    for n, (item, owner) in enumerate(owners.items()):
        start = T0 + (2 + n) * D
        shares += [(f"{item}-s{i}", f"u-{i}", item, start + i * 30_000, owner) for i in range(40)]
        shares += [(f"{item}-t{i}", f"v-{i}", item, T0 + (i * 5 + 1) * H, owner) for i in range(3)]  # slow tail
        posts.append((item, owner, start - H, item == "own", False))
    posts += [("prize-2", "o2", T0 + 3 * D - 2 * H, True, False),  # within 24 h before its burst
              ("prize-1", "o2", T0 + 3 * D - 30 * H, False, True),  # also before, but an older one
              ("prize-3", "o3", T0 + 4 * D - 30 * H, True, True),  # too long before
              ("prize-4", "o4", T0 + 5 * D + 2 * H, True, False)]  # after the burst
    cols = list(zip(*shares, strict=True))
    _write(folder / "shares.parquet", id=list(cols[0]), src=list(cols[1]), item=list(cols[2]), ts=list(cols[3]),
           owner=list(cols[4]))
    cols = list(zip(*posts, strict=True))
    _write(folder / "posts.parquet", id=list(cols[0]), author=list(cols[1]), ts=list(cols[2]),
           induced=list(cols[3]), reward=list(cols[4]))


@pytest.mark.parametrize("kind", ["duckdb", "spark"])
def test_a_share_burst_is_a_finding_only_when_linked_to_its_trigger(tmp_path, kind, spark):
    _bursts(tmp_path)
    engine = _engine(kind, spark)
    load_tables(engine, tmp_path, ("shares", "posts"))
    found = {f.targets[0]: f for f in shares.detect(engine)}
    assert engine.rows("SELECT COUNT(*) FROM sh_burst")[0][0] == 5  # all five are fast, direct bursts
    assert set(found) == {"own", "after"}
    own, after = found["own"].evidence, found["after"].evidence
    assert (own["trigger"], own["trigger_post"], own["trigger_delay_ms"]) == ("induced_text", "own", H)
    assert (after["trigger"], after["trigger_post"], after["trigger_delay_ms"]) == ("reward_post", "prize-2", 2 * H)
    assert found["after"].accounts == ("o2",)


def _friend_requests(folder):
    """200 people p0..p199, each friends with the next ten. `social` and `shy` each have four friends among
    them and ask 40 friends of friends in a day: most accept `social`, 2 accept `shy`. `newcomer` asks 40
    people it has no friend in common with, most accept; `spammer` asks 60 strangers, 4 accept."""
    rows = []
    people = [f"p{i}" for i in range(200)]
    for i, p in enumerate(people):
        rows += [(p, people[(i + j) % 200], T0 + i * M, True, T0 + i * M + H) for j in range(1, 11)]
    later = T0 + 5 * D

    def asks(src, dsts, accepted):
        return [(src, d, later + n * M, n in accepted, later + n * M + H if n in accepted else None)
                for n, d in enumerate(dsts)]

    for who, anchors, accepted in (("social", (0, 50, 100, 150), set(range(32))),
                                   ("shy", (25, 75, 125, 175), {0, 1})):
        rows += [(who, people[a], T0 + D, True, T0 + D + H) for a in anchors]
        fof = [people[(a + k) % 200] for a in anchors for k in range(1, 11)]  # friends of its friends
        rows += asks(who, fof, accepted)
    rows += asks("newcomer", [f"old-{n}" for n in range(40)], set(range(32)))
    rows += asks("spammer", [f"s-{n}" for n in range(60)], {0, 1, 2, 3})
    cols = list(zip(*rows, strict=True))
    _write(folder / "friend_requests.parquet", src=list(cols[0]), dst=list(cols[1]), ts=list(cols[2]),
           accepted=list(cols[3]), accepted_ts=pa.array(cols[4], pa.int64()))


@pytest.mark.parametrize("kind", ["duckdb", "spark"])
def test_friend_spam_flags_the_spammer_not_sociable_people(tmp_path, kind, spark):
    _friend_requests(tmp_path)
    engine = _engine(kind, spark)
    load_tables(engine, tmp_path, ("friend_requests",))
    found = friend_spam.detect(engine)
    # `shy` passes the cheap tests (volume, one-way adds, low acceptance); its friends of friends keep it out
    assert {r[0] for r in engine.rows("SELECT src FROM fs_cand")} == {"shy", "spammer"}
    assert [f.accounts for f in found] == [("spammer",)]
    ev = found[0].evidence
    assert (ev["asked"], ev["peak_per_day"], ev["one_way"], ev["stranger_share"]) == (60, 60, 56, 1.0)
    assert ev["acceptance_ratio"] == pytest.approx(4 / 60, abs=1e-4) and found[0].score == 56.0
