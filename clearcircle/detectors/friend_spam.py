"""Friend-request spam (S7): accounts that add strangers by the hundreds, over a whole period at once.

The real-time rules (signals/friend_requests.py) judge each request as it comes, from counters; this batch
detector sees the finished picture: who answered, and whom each target already knew. Over `friend_requests`
(src asks dst at ts; `accepted`, and since when: `accepted_ts`), per requester:

- requests per day: the most distinct people asked in one UTC day of the data (`peak_per_day`);
- acceptance ratio: accepted / asked (distinct people);
- one-way adds: asked but never accepted;
- share of targets with no mutual friend: friendships are the accepted requests (from `accepted_ts` on); a
  target is a stranger when no account was a friend of both BEFORE the request (computed in SQL, a join of
  the request with the two friendship lists), and the two were not friends already.

Flagged when all of: `min_per_day` people asked in one day, at least `min_one_way` one-way adds, an
acceptance ratio of at most `max_acceptance`, and at least `min_stranger_share` strangers. A sociable person
also asks many people in a day, but friends of friends, who mostly accept: the acceptance ratio and the
stranger share keep them out, whatever the volume; a newcomer whose old acquaintances accept stays out too.
The mutual-friend join runs only for the requests of accounts that pass the cheap tests first.

Findings: one per account; `accounts` the requester, `targets` empty (the people asked are its victims, not
where a measure applies), score = one-way adds to strangers (what the pack's graduated rules read through
`graph.friend_spam`), evidence the four measures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clearcircle.detectors.engine import Engine
from clearcircle.detectors.finding import Finding, make, ranked

NAME = "friend_spam"
DAY_MS = 86_400_000


@dataclass(frozen=True)
class FriendSpamParams:
    min_per_day: int = 20
    min_one_way: int = 30
    max_acceptance: float = 0.3
    min_stranger_share: float = 0.7


def detect(engine: Engine, params: FriendSpamParams | None = None,
           step: Callable[[str], None] = lambda _s: None) -> list[Finding]:
    """Run over the engine's `friend_requests` table; returns one finding per spamming account."""
    p = params or FriendSpamParams()
    step("requests")
    engine.table("fs_req", """
        SELECT src, dst, MIN(ts) AS ts, MAX(CASE WHEN accepted THEN 1 ELSE 0 END) AS acc
        FROM friend_requests WHERE src <> dst GROUP BY src, dst""")
    # the cheap measures first: only accounts passing them get the mutual-friend join
    if engine.table("fs_cand", f"""
        WITH tot AS (SELECT src, COUNT(*) AS asked, SUM(acc) AS accepted FROM fs_req GROUP BY src
                     HAVING COUNT(*) - SUM(acc) >= {p.min_one_way} AND SUM(acc) <= {p.max_acceptance} * COUNT(*)),
        daily AS (SELECT q.src, CAST(FLOOR(q.ts / {DAY_MS}) AS BIGINT) AS d, COUNT(*) AS n
                  FROM fs_req q JOIN tot ON q.src = tot.src GROUP BY q.src, CAST(FLOOR(q.ts / {DAY_MS}) AS BIGINT)),
        peak AS (SELECT src, MAX(n) AS peak FROM daily GROUP BY src)
        SELECT tot.src, tot.asked, tot.accepted, peak.peak FROM tot JOIN peak ON tot.src = peak.src
        WHERE peak.peak >= {p.min_per_day}""") == 0:
        return []
    step("mutual friends")
    engine.table("fs_friend", """
        SELECT src AS a, dst AS b, accepted_ts AS ts FROM friend_requests WHERE accepted
        UNION ALL SELECT dst AS a, src AS b, accepted_ts AS ts FROM friend_requests WHERE accepted""")
    engine.table("fs_known", """
        WITH q AS (SELECT r.src, r.dst, r.ts FROM fs_req r WHERE r.src IN (SELECT src FROM fs_cand))
        SELECT DISTINCT q.src, q.dst FROM q
        JOIN fs_friend x ON x.a = q.src AND x.ts < q.ts
        JOIN fs_friend y ON y.a = q.dst AND y.b = x.b AND y.ts < q.ts
        UNION
        SELECT q.src, q.dst FROM q JOIN fs_friend z ON z.a = q.src AND z.b = q.dst AND z.ts < q.ts""")
    rows = engine.rows(f"""
        WITH s AS (
            SELECT r.src, SUM(CASE WHEN k.src IS NULL THEN 1 ELSE 0 END) AS strangers,
                   SUM(CASE WHEN k.src IS NULL AND r.acc = 0 THEN 1 ELSE 0 END) AS one_way_strangers
            FROM fs_req r JOIN fs_cand c ON r.src = c.src
            LEFT JOIN fs_known k ON r.src = k.src AND r.dst = k.dst
            GROUP BY r.src)
        SELECT c.src, c.asked, c.accepted, c.peak, s.strangers, s.one_way_strangers
        FROM fs_cand c JOIN s ON c.src = s.src
        WHERE s.strangers >= {p.min_stranger_share} * c.asked""")
    out = []
    for src, asked, accepted, peak, strangers, one_way_strangers in rows:
        asked, accepted = int(asked), int(accepted)
        out.append(make(NAME, [src], [], float(one_way_strangers), asked=asked, peak_per_day=int(peak),
                        acceptance_ratio=round(accepted / asked, 4), one_way=asked - accepted,
                        stranger_share=round(int(strangers) / asked, 4),
                        one_way_strangers=int(one_way_strangers)))
    return ranked(out)
