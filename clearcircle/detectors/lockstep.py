"""Bought followers (S3): groups of accounts that follow the same targets in lockstep.

CopyCatch-style, over the `follows` table (src, dst, ts):

1. Cells are (target, time window). A cell is a *burst* only against the target's OWN baseline: its count
   must reach `min_cell` and `burst_ratio` times the count the target's overall rate predicts for one window.
   A popular target gains hundreds of followers every hour, so its cells are never bursts, and the heavy
   followers of popular targets (a plain "many shared cells" rule flags them by the ten thousand) never
   enter; the camouflage follows of bought accounts (popular targets, random times) drop out the same way.
2. Two window grids offset by half a window: a burst of up to half a window that straddles a boundary of one
   grid lies whole inside a cell of the other. Both are computed from half-window counts, one scan.
3. Iterative pruning: an account must be in burst cells of `min_targets` distinct targets, a cell must keep
   `min_cell` such accounts; repeat until nothing changes.
4. Lockstep, not coincidence: two accounts are partners when they were in the same burst cells of
   `min_targets` distinct targets; an account needs `min_group - 1` partners (pruned again until stable),
   so heavy followers who happen to join several organic spikes, each with different people, fall out.
5. Groups are connected components of the partner graph (label propagation); each group's targets are the
   burst cells `min_cell` of its members share. Its score is FRAUDAR's density: the group's follow edges into
   its targets, each weighted 1/ln(followers of the target + 5) (camouflage-resistant column weights),
   divided by (accounts + targets).
6. Unfollows (`unfollows`: src, dst, ts) do not erase the lockstep: the bursts, the group and its score are
   judged on the follows as they happened (a bought block undone after the campaign was still bought). What
   a target is inflated by NOW counts only the followers still following: per target, evidence `bought`
   (group members in its burst) and `still_following` (those whose latest follow is after their latest
   unfollow); a target nobody of the group still follows is listed in `undone_targets` and no longer in
   `targets`. The store scales the target's `graph.follower_fraud` by still_following / bought.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from clearcircle.detectors.engine import Engine
from clearcircle.detectors.finding import Finding, make, ranked
from clearcircle.detectors.propagate import components

NAME = "lockstep"


@dataclass(frozen=True)
class LockstepParams:
    window_ms: int = 3_600_000
    min_cell: int = 10
    burst_ratio: float = 5.0
    min_targets: int = 5
    min_group: int = 10
    max_rounds: int = 20


def detect(engine: Engine, params: LockstepParams | None = None,
           step: Callable[[str], None] = lambda _s: None) -> list[Finding]:
    """Run over the engine's `follows` and `unfollows` tables; returns the groups, best score first."""
    p = params or LockstepParams()
    span = engine.rows("SELECT MIN(ts), MAX(ts) FROM follows")[0]
    if span[0] is None:
        return []
    lo, half = int(span[0]), p.window_ms // 2
    windows = max(1.0, (int(span[1]) - lo) / p.window_ms)  # how many windows the data covers
    step("cells")
    engine.table("ls_half", f"""
        SELECT dst, CAST(FLOOR((ts - {lo}) / {half}) AS BIGINT) AS h, COUNT(*) AS c
        FROM follows GROUP BY dst, CAST(FLOOR((ts - {lo}) / {half}) AS BIGINT)""")
    # a window reaches the target's burst threshold only if one of its halves holds half of it: sum just those
    engine.table("ls_burst", f"""
        WITH tot AS (SELECT dst, SUM(c) AS n, GREATEST({p.min_cell}, {p.burst_ratio} * SUM(c) / {windows}) AS need
                     FROM ls_half GROUP BY dst),
        big AS (SELECT ls_half.dst, ls_half.h FROM ls_half JOIN tot ON ls_half.dst = tot.dst
                WHERE ls_half.c * 2 >= tot.need),
        cand AS (
            SELECT DISTINCT dst, g, k FROM (
                SELECT dst, 0 AS g, CAST(FLOOR(h / 2) AS BIGINT) AS k FROM big
                UNION ALL
                SELECT dst, 1 AS g, CAST(FLOOR((h + 1) / 2) AS BIGINT) AS k FROM big) x),
        part AS (SELECT dst, g, k, 2 * k - g AS h FROM cand UNION ALL SELECT dst, g, k, 2 * k - g + 1 AS h FROM cand),
        mine AS (SELECT dst, h, c FROM ls_half WHERE dst IN (SELECT dst FROM big)),
        cell AS (
            SELECT part.dst, part.g, part.k, SUM(mine.c) AS c FROM part JOIN mine
              ON mine.dst = part.dst AND mine.h = part.h
            GROUP BY part.dst, part.g, part.k)
        SELECT cell.dst, cell.g, cell.k, cell.c, tot.n FROM cell JOIN tot ON cell.dst = tot.dst
        WHERE cell.c >= tot.need""")
    # the half-windows each burst cell covers: grid 0 cell k = halves 2k, 2k+1; grid 1 cell k = 2k-1, 2k
    step("members")
    members = engine.table("ls_m", f"""
        WITH halves AS (
            SELECT dst, g, k, 2 * k - g AS h FROM ls_burst
            UNION ALL SELECT dst, g, k, 2 * k - g + 1 AS h FROM ls_burst)
        SELECT DISTINCT f.src, f.dst, halves.g, halves.k
        FROM follows f JOIN halves
          ON f.dst = halves.dst AND CAST(FLOOR((f.ts - {lo}) / {half}) AS BIGINT) = halves.h""")
    step("pruning")
    _prune_members(engine, p, members)
    step("partners")
    pairs = engine.table("ls_pair", f"""
        SELECT a.src AS u, b.src AS v FROM ls_m a JOIN ls_m b
          ON a.dst = b.dst AND a.g = b.g AND a.k = b.k AND a.src < b.src
        GROUP BY a.src, b.src HAVING COUNT(DISTINCT a.dst) >= {p.min_targets}""")
    _prune_partners(engine, p, pairs)
    step("groups")
    components(engine, "ls_pair", "ls_label", p.max_rounds)
    engine.table("ls_gm", """
        SELECT m.src, m.dst, m.g, m.k, l.label FROM ls_m m JOIN ls_label l ON m.src = l.node""")
    engine.table("ls_gcell", f"""
        SELECT label, dst, g, k FROM ls_gm GROUP BY label, dst, g, k HAVING COUNT(DISTINCT src) >= {p.min_cell}""")
    engine.table("ls_edge", """
        SELECT DISTINCT gm.label, gm.src, gm.dst FROM ls_gm gm
        JOIN (SELECT DISTINCT label, dst FROM ls_gcell) t ON gm.label = t.label AND gm.dst = t.dst""")
    members = engine.rows("SELECT label, node FROM ls_label")
    step("still following")
    targets = engine.rows("""
        WITH lu AS (SELECT u.src, u.dst, MAX(u.ts) AS ts FROM unfollows u
                    JOIN (SELECT DISTINCT src, dst FROM ls_edge) e ON u.src = e.src AND u.dst = e.dst
                    GROUP BY u.src, u.dst),
        lf AS (SELECT f.src, f.dst, MAX(f.ts) AS ts FROM follows f JOIN lu ON f.src = lu.src AND f.dst = lu.dst
               GROUP BY f.src, f.dst)
        SELECT e.label, e.dst, COUNT(*) AS bought,
               SUM(CASE WHEN lu.ts IS NULL OR lu.ts < lf.ts THEN 1 ELSE 0 END) AS still
        FROM ls_edge e LEFT JOIN lu ON e.src = lu.src AND e.dst = lu.dst
        LEFT JOIN lf ON e.src = lf.src AND e.dst = lf.dst
        GROUP BY e.label, e.dst""")
    dens = engine.rows("""
        WITH deg AS (SELECT dst, SUM(c) AS n FROM ls_half GROUP BY dst)
        SELECT e.label, SUM(1.0 / LN(deg.n + 5)), COUNT(*) FROM ls_edge e JOIN deg ON e.dst = deg.dst
        GROUP BY e.label""")
    return _findings(members, targets, dens, p)


def _prune_members(engine: Engine, p: LockstepParams, before: int) -> None:
    """Drop accounts with burst cells on too few targets and cells with too few such accounts, until stable."""
    for _ in range(p.max_rounds):
        now = engine.table("ls_m", f"""
            WITH a AS (SELECT m.src, m.dst, m.g, m.k FROM ls_m m
                       JOIN (SELECT src FROM ls_m GROUP BY src HAVING COUNT(DISTINCT dst) >= {p.min_targets}) s
                         ON m.src = s.src)
            SELECT a.src, a.dst, a.g, a.k FROM a
            JOIN (SELECT dst, g, k FROM a GROUP BY dst, g, k HAVING COUNT(*) >= {p.min_cell}) c
              ON a.dst = c.dst AND a.g = c.g AND a.k = c.k""")
        if now == before:
            return
        before = now


def _prune_partners(engine: Engine, p: LockstepParams, before: int) -> None:
    """Keep accounts with at least min_group - 1 partners among kept accounts, until stable (a k-core)."""
    for _ in range(p.max_rounds):
        now = engine.table("ls_pair", f"""
            WITH d AS (SELECT x, COUNT(*) AS n FROM (SELECT u AS x FROM ls_pair UNION ALL SELECT v AS x FROM ls_pair) y
                       GROUP BY x HAVING COUNT(*) >= {p.min_group - 1})
            SELECT u, v FROM ls_pair WHERE u IN (SELECT x FROM d) AND v IN (SELECT x FROM d)""")
        if now == before:
            break
        before = now
    engine.table("ls_m", """
        SELECT m.src, m.dst, m.g, m.k FROM ls_m m
        WHERE m.src IN (SELECT u FROM ls_pair UNION ALL SELECT v FROM ls_pair)""")


def _findings(members: list[tuple], targets: list[tuple], dens: list[tuple], p: LockstepParams) -> list[Finding]:
    accounts: dict[object, list[object]] = defaultdict(list)
    for label, node in members:
        accounts[label].append(node)
    burst: dict[object, dict[str, tuple[int, int]]] = defaultdict(dict)
    for label, dst, bought, still in targets:
        burst[label][str(dst)] = (int(bought), int(still))
    weight = {label: (w, n) for label, w, n in dens}
    out = []
    for label, accs in accounts.items():
        if len(accs) < p.min_group or label not in burst:
            continue
        cells = burst[label]
        w, edges = weight.get(label, (0.0, 0))
        score = float(w) / (len(accs) + len(cells))
        # the lockstep stays evidence; only targets some of the group still follows are inflated now
        inflated = [t for t, (_b, still) in cells.items() if still > 0]
        out.append(make(NAME, accs, inflated, score, n_accounts=len(accs), n_targets=len(cells),
                        edges=int(edges), window_ms=p.window_ms,
                        bought={t: b for t, (b, _s) in sorted(cells.items())},
                        still_following={t: s for t, (_b, s) in sorted(cells.items())},
                        undone_targets=sorted(t for t, (_b, s) in cells.items() if s == 0)))
    return ranked(out)
