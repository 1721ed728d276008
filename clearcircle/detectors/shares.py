"""Induced-share bursts (S2): an item shared by many accounts unusually fast, straight from its source, right
after a reward-like trigger or from a post whose own text induces sharing.

Over `shares` (id, src, item, ts, owner) and `posts` (id, author, ts, induced, reward: the flags the post's
stored decision gave it). A share whose item is another share's id is a reshare; the cascade's root is the
first item that is not a share.

1. Direct shares of each item (its item is not a share) are counted per (item, window) cell on two grids
   offset by half a window (a burst straddling one boundary lies whole in the other grid). A cell is a
   candidate when `min_sharers` distinct accounts share in it and that is `burst_ratio` times what the
   item's own direct-share rate predicts for one window.
2. For candidates only, the cascade is followed level by level (a loop around one join per level): its
   size and depth, and the share of the cell's cascade shares that were direct. Prizes for sharing make
   people broadcast the source itself; word of mouth reshares from friends. A burst needs a direct share of
   at least `min_direct`, so a post going viral by word of mouth, fast as it may be, is not one.
3. Linkage: a burst is an S2 finding only when it is tied to what induced it. Either the item is itself a
   post flagged induced (or reward) by its decision (`trigger: induced_text`), or its owner published such a
   post at most `trigger_ms` before the burst's first share (`trigger: reward_post`, the latest one). An
   unlinked fast burst (news, a joke going round) is NOT an S2 finding, however fast: nothing induced it.

Findings: `targets` the item, `accounts` its owner (who induced the sharing) when known (the item's post
author, else the shares' `owner`). Evidence: peak sharers, direct share, cascade size and depth, the first
share, and the link: `trigger`, `trigger_post`, `trigger_delay_ms` (from the trigger post to the burst).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clearcircle.detectors.engine import Engine
from clearcircle.detectors.finding import Finding, make, ranked

NAME = "share_burst"


@dataclass(frozen=True)
class ShareParams:
    window_ms: int = 3_600_000
    min_sharers: int = 30
    burst_ratio: float = 5.0
    min_direct: float = 0.8
    max_depth: int = 64
    trigger_ms: int = 24 * 3_600_000  # how long before a burst a reward post by the owner still counts


def detect(engine: Engine, params: ShareParams | None = None,
           step: Callable[[str], None] = lambda _s: None) -> list[Finding]:
    p = params or ShareParams()
    span = engine.rows("SELECT MIN(ts), MAX(ts) FROM shares")[0]
    if span[0] is None:
        return []
    lo, half = int(span[0]), p.window_ms // 2
    windows = max(1.0, (int(span[1]) - lo) / p.window_ms)
    step("direct shares")
    engine.table("sh_direct", f"""
        SELECT s.id, s.src, s.item, s.ts, CAST(FLOOR((s.ts - {lo}) / {half}) AS BIGINT) AS h
        FROM shares s LEFT JOIN shares p ON s.item = p.id WHERE p.id IS NULL""")
    engine.table("sh_cand", f"""
        WITH tot AS (SELECT item, COUNT(*) AS n FROM sh_direct GROUP BY item HAVING COUNT(*) >= {p.min_sharers}),
        cell AS (
            SELECT item, g, k, COUNT(DISTINCT src) AS c, MIN(ts) AS first_ms FROM (
                SELECT item, src, ts, 0 AS g, CAST(FLOOR(h / 2) AS BIGINT) AS k FROM sh_direct
                UNION ALL
                SELECT item, src, ts, 1 AS g, CAST(FLOOR((h + 1) / 2) AS BIGINT) AS k FROM sh_direct) x
            WHERE item IN (SELECT item FROM tot)
            GROUP BY item, g, k)
        SELECT cell.item, cell.g, cell.k, cell.c, cell.first_ms, tot.n FROM cell JOIN tot ON cell.item = tot.item
        WHERE cell.c >= {p.min_sharers} AND cell.c >= {p.burst_ratio} * tot.n / {windows}""")
    step("cascades")
    engine.table("sh_c1", """
        SELECT d.id, d.item AS root, d.ts, 1 AS depth FROM sh_direct d
        WHERE d.item IN (SELECT item FROM sh_cand)""")
    levels = 1
    for d in range(2, p.max_depth + 1):
        if engine.table(f"sh_c{d}", f"""
                SELECT s.id, c.root, s.ts, {d} AS depth FROM shares s JOIN sh_c{d - 1} c ON s.item = c.id""") == 0:
            break
        levels = d
    engine.table("sh_cascade", " UNION ALL ".join(f"SELECT id, root, ts, depth FROM sh_c{d}"
                                                   for d in range(1, levels + 1)))
    step("bursts")
    if engine.table("sh_burst", f"""
        WITH inc AS (
            SELECT root, 0 AS g, CAST(FLOOR((ts - {lo}) / {p.window_ms}) AS BIGINT) AS k, depth FROM sh_cascade
            UNION ALL
            SELECT root, 1 AS g, CAST(FLOOR((ts - {lo} + {half}) / {p.window_ms}) AS BIGINT) AS k, depth
            FROM sh_cascade),
        cellall AS (SELECT root, g, k, COUNT(*) AS total,
                           SUM(CASE WHEN depth = 1 THEN 1 ELSE 0 END) AS direct FROM inc GROUP BY root, g, k),
        best AS (
            SELECT c.item, MAX(c.c) AS sharers, MAX(1.0 * a.direct / a.total) AS direct_share,
                   MIN(c.first_ms) AS start_ms
            FROM sh_cand c JOIN cellall a ON c.item = a.root AND c.g = a.g AND c.k = a.k
            WHERE 1.0 * a.direct / a.total >= {p.min_direct}
            GROUP BY c.item),
        size AS (SELECT root, COUNT(*) AS size, MAX(depth) AS depth, MIN(ts) AS first_ms FROM sh_cascade
                 GROUP BY root),
        owner AS (
            SELECT b.item, MIN(ps.author) AS author, MIN(s.owner) AS owner FROM best b
            LEFT JOIN posts ps ON ps.id = b.item LEFT JOIN shares s ON s.item = b.item GROUP BY b.item)
        SELECT best.item, best.sharers, best.direct_share, best.start_ms, size.size, size.depth, size.first_ms,
               COALESCE(owner.author, owner.owner) AS owner
        FROM best JOIN size ON best.item = size.root JOIN owner ON best.item = owner.item""") == 0:
        return []
    step("triggers")
    return _linked(engine, p)


def _linked(engine: Engine, p: ShareParams) -> list[Finding]:
    """The bursts of `sh_burst` tied to a trigger: the item's own induced text, or a reward post by its owner
    at most `trigger_ms` before the burst's first share (the latest such post)."""
    rows = engine.rows(f"""
        WITH cand AS (
            SELECT b.item, 'induced_text' AS kind, ps.id AS post, b.start_ms - ps.ts AS delay, 0 AS pref
            FROM sh_burst b JOIN posts ps ON ps.id = b.item WHERE ps.induced OR ps.reward
            UNION ALL
            SELECT b.item, 'reward_post' AS kind, ps.id AS post, b.start_ms - ps.ts AS delay, 1 AS pref
            FROM sh_burst b JOIN posts ps ON ps.author = b.owner
            WHERE (ps.induced OR ps.reward) AND ps.id <> b.item
              AND ps.ts <= b.start_ms AND b.start_ms - ps.ts <= {p.trigger_ms}),
        pick AS (SELECT item, kind, post, delay,
                        ROW_NUMBER() OVER (PARTITION BY item ORDER BY pref, delay, post) AS r FROM cand)
        SELECT b.item, b.sharers, b.direct_share, b.start_ms, b.size, b.depth, b.first_ms, b.owner,
               pick.kind, pick.post, pick.delay
        FROM sh_burst b JOIN pick ON b.item = pick.item AND pick.r = 1""")
    out = []
    for item, sharers, direct, start_ms, size, depth, first_ms, owner, kind, post, delay in rows:
        out.append(make(NAME, [owner] if owner is not None else [], [item], float(sharers),
                        peak_sharers=int(sharers), window_ms=p.window_ms, direct_share=round(float(direct), 4),
                        cascade_size=int(size), cascade_depth=int(depth), first_share_ms=int(first_ms),
                        burst_start_ms=int(start_ms), trigger=kind, trigger_post=str(post),
                        trigger_delay_ms=int(delay)))
    return ranked(out)
