"""Ban evasion (S13): new accounts in the identity cluster of a banned account.

Over `links` (account, kind, value: hashed device, phone, payment or identity number) and `accounts`
(account, registered_ms, banned_ms; null: not banned):

- Accounts sharing a value are linked; clusters are connected components (label propagation), so a second
  new account that shares only a phone with the first new one still joins the banned account's cluster.
- A value shared by more than `max_share` accounts (an internet cafe's device, a company's payment
  account) links nothing: it says nothing about one person.
- An evader is an account registered after an account of its cluster was banned; it evades the earliest
  such ban (ties: the smallest id). A relative who registered before the ban is not one.

One finding per cluster: `accounts` the evaders, `targets` the banned accounts evaded; the evidence maps
each evader to the account it evades and lists the cluster's members (for new accounts that join it later).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from clearcircle.detectors.engine import Engine
from clearcircle.detectors.finding import Finding, make, ranked
from clearcircle.detectors.propagate import components

NAME = "evasion"
MAX_MEMBERS_SHOWN = 200


@dataclass(frozen=True)
class EvasionParams:
    max_share: int = 50
    max_rounds: int = 50


def detect(engine: Engine, params: EvasionParams | None = None,
           step: Callable[[str], None] = lambda _s: None) -> list[Finding]:
    p = params or EvasionParams()
    step("links")
    engine.table("ev_edge", f"""
        SELECT DISTINCT l.account AS u, v.first AS v FROM links l
        JOIN (SELECT kind, value, MIN(account) AS first FROM links GROUP BY kind, value
              HAVING COUNT(DISTINCT account) BETWEEN 2 AND {p.max_share}) v
          ON l.kind = v.kind AND l.value = v.value
        WHERE l.account <> v.first""")
    step("clusters")
    components(engine, "ev_edge", "ev_label", p.max_rounds)
    engine.table("ev_member", """
        SELECT l.label, l.node AS account, a.registered_ms, a.banned_ms
        FROM ev_label l LEFT JOIN accounts a ON l.node = a.account""")
    step("evaders")
    engine.table("ev_evader", """
        SELECT label, account, banned FROM (
            SELECT n.label, n.account, b.account AS banned,
                   ROW_NUMBER() OVER (PARTITION BY n.account ORDER BY b.banned_ms, b.account) AS rn
            FROM ev_member n JOIN ev_member b ON n.label = b.label
            WHERE b.banned_ms IS NOT NULL AND b.banned_ms > 0 AND n.registered_ms > b.banned_ms
              AND n.account <> b.account) x
        WHERE rn = 1""")
    evaders = engine.rows("SELECT label, account, banned FROM ev_evader")
    members = engine.rows("SELECT m.label, m.account, m.banned_ms FROM ev_member m "
                          "WHERE m.label IN (SELECT label FROM ev_evader)")
    of: dict[object, dict[str, str]] = defaultdict(dict)
    for label, account, banned in evaders:
        of[label][str(account)] = str(banned)
    cluster: dict[object, list[str]] = defaultdict(list)
    banned_in: dict[object, dict[str, int]] = defaultdict(dict)
    for label, account, banned_ms in members:
        cluster[label].append(str(account))
        if banned_ms is not None and banned_ms > 0:
            banned_in[label][str(account)] = int(banned_ms)
    out = []
    for label, mapping in of.items():
        shown = sorted(cluster[label])[:MAX_MEMBERS_SHOWN]
        out.append(make(NAME, mapping, mapping.values(), len(mapping) / len(cluster[label]) + len(mapping),
                        evasion_of=dict(sorted(mapping.items())), cluster_size=len(cluster[label]),
                        banned_ms=dict(sorted(banned_in[label].items())), members=shown))
    return ranked(out)
