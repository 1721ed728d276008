"""MLM distribution (S4): referral trees whose rewards reach up several levels, or that charge to join.

Over the `referrals` table (src = referrer, dst = referee, ts, reward, fee):

- A referee's parent is its earliest referrer (ties: smallest id), so each account has at most one parent
  and the trees are a forest; roots are parents that nobody referred. Depth comes level by level from the
  roots (a Python loop around one join per level; a cycle without a root is never reached).
- Rewarded levels of a recruit: the distinct distances between the recruit and the ancestors of its tree
  that were paid for it (each payment is a referral row of that ancestor naming the recruit). A one-level
  programme pays only the direct referrer, however long its invitation chains grow: 1 level. A pyramid pays
  the upline: 3 levels or more (the seeds' "three-level distribution").
- Joining fees: referrals where the recruit paid to join; "pay from recruiting" is a fee and a reward on the
  same referral (the recruiter is paid out of the recruit's fee, not from sales).

A tree is flagged when it pays `min_levels` or more levels for some recruit, or has `min_fee_referrals`
fee-paying referrals, and has at least `min_members` members. Organisers: the root. One-level programmes
without a fee stay allowed however large they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from clearcircle.detectors.engine import Engine
from clearcircle.detectors.finding import Finding, make, ranked

NAME = "mlm"


@dataclass(frozen=True)
class MlmParams:
    min_levels: int = 3
    min_fee_referrals: int = 3
    min_members: int = 5
    max_depth: int = 64


def detect(engine: Engine, params: MlmParams | None = None,
           step: Callable[[str], None] = lambda _s: None) -> list[Finding]:
    p = params or MlmParams()
    step("parents")
    engine.table("mlm_parent", """
        SELECT child, parent, fee, reward FROM (
            SELECT dst AS child, src AS parent, fee, reward,
                   ROW_NUMBER() OVER (PARTITION BY dst ORDER BY ts, src) AS rn
            FROM referrals WHERE src <> dst) x
        WHERE rn = 1""")
    engine.table("mlm_f0", """
        SELECT DISTINCT p.parent AS node, p.parent AS root, 0 AS depth
        FROM mlm_parent p LEFT JOIN mlm_parent c ON p.parent = c.child WHERE c.child IS NULL""")
    step("levels")
    levels = 0
    for d in range(1, p.max_depth + 1):
        if engine.table(f"mlm_f{d}", f"""
                SELECT p.child AS node, f.root, {d} AS depth FROM mlm_parent p JOIN mlm_f{d - 1} f
                ON p.parent = f.node""") == 0:
            break
        levels = d
    engine.table("mlm_node", " UNION ALL ".join(f"SELECT node, root, depth FROM mlm_f{d}" for d in range(levels + 1)))
    step("trees")
    engine.table("mlm_paid", """
        SELECT c.root, r.dst AS recruit, COUNT(DISTINCT c.depth - a.depth) AS levels
        FROM referrals r
        JOIN mlm_node a ON r.src = a.node JOIN mlm_node c ON r.dst = c.node
        WHERE r.reward > 0 AND a.root = c.root AND a.depth < c.depth
        GROUP BY c.root, r.dst""")
    engine.table("mlm_tree", f"""
        WITH size AS (SELECT root, COUNT(*) AS members, MAX(depth) AS depth FROM mlm_node GROUP BY root),
        fan AS (SELECT n.root, MAX(k.children) AS fanout FROM mlm_node n
                JOIN (SELECT parent, COUNT(*) AS children FROM mlm_parent GROUP BY parent) k ON n.node = k.parent
                GROUP BY n.root),
        paid AS (SELECT root, MAX(levels) AS levels FROM mlm_paid GROUP BY root),
        fees AS (SELECT n.root, SUM(CASE WHEN p.fee > 0 THEN 1 ELSE 0 END) AS fee_referrals,
                        SUM(CASE WHEN p.fee > 0 AND p.reward > 0 THEN 1 ELSE 0 END) AS paid_from_fees,
                        SUM(COALESCE(p.fee, 0)) AS fees_total
                 FROM mlm_node n JOIN mlm_parent p ON n.node = p.child GROUP BY n.root)
        SELECT size.root, size.members, size.depth, COALESCE(fan.fanout, 0) AS fanout,
               COALESCE(paid.levels, 0) AS levels, COALESCE(fees.fee_referrals, 0) AS fee_referrals,
               COALESCE(fees.paid_from_fees, 0) AS paid_from_fees, COALESCE(fees.fees_total, 0) AS fees_total
        FROM size LEFT JOIN fan ON size.root = fan.root LEFT JOIN paid ON size.root = paid.root
        LEFT JOIN fees ON size.root = fees.root
        WHERE size.members >= {p.min_members}
          AND (COALESCE(paid.levels, 0) >= {p.min_levels}
               OR COALESCE(fees.fee_referrals, 0) >= {p.min_fee_referrals})""")
    trees = engine.rows("SELECT root, members, depth, fanout, levels, fee_referrals, paid_from_fees, fees_total "
                        "FROM mlm_tree")
    members: dict[object, list[object]] = defaultdict(list)
    for root, node in engine.rows("SELECT n.root, n.node FROM mlm_node n JOIN mlm_tree t ON n.root = t.root"):
        members[root].append(node)
    out = []
    for root, size, depth, fanout, lv, fee_refs, from_fees, fees_total in trees:
        reasons = [r for r, hit in (("multi_level_rewards", lv >= p.min_levels),
                                    ("joining_fee", fee_refs >= p.min_fee_referrals),
                                    ("pay_from_recruiting", from_fees >= p.min_fee_referrals)) if hit]
        score = int(lv) + min(1.0, int(fee_refs) / max(1, int(size) - 1)) + len(reasons)
        out.append(make(NAME, members[root], [root], score, organisers=[str(root)], members=int(size),
                        depth=int(depth), fanout=int(fanout), rewarded_levels=int(lv),
                        fee_referrals=int(fee_refs), paid_from_fees=int(from_fees),
                        fees_total=round(float(fees_total), 2), reasons=reasons))
    return ranked(out)
