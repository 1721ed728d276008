"""Connected components by label propagation: the one graph loop the detectors share.

Each node starts with its own id as label and repeatedly takes the smallest label among itself and its
neighbours, until no label changes; the rounds are bounded by the graph's diameter. Plain SQL joins and
MIN, so it runs on any engine (GraphFrames or networkx would tie the detector to one of them).
"""

from __future__ import annotations

from clearcircle.detectors.engine import Engine, scalar


def components(engine: Engine, edges: str, out: str, max_rounds: int = 50) -> int:
    """Label every node of the undirected edge table `edges` (u, v) with the smallest node id of its
    component, into table `out` (node, label). Returns the rounds it took."""
    engine.table(f"{out}_e", f"SELECT u, v FROM {edges} UNION ALL SELECT v AS u, u AS v FROM {edges}")
    cur = f"{out}_0"
    engine.table(cur, f"""
        SELECT u AS node, CASE WHEN MIN(v) < u THEN MIN(v) ELSE u END AS label FROM {out}_e GROUP BY u""")
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        nxt = f"{out}_{rounds % 2}"
        engine.table(nxt, f"""
            SELECT l.node, LEAST(l.label, MIN(n.label)) AS label
            FROM {cur} l JOIN {out}_e e ON l.node = e.u JOIN {cur} n ON e.v = n.node
            GROUP BY l.node, l.label""")
        changed = scalar(engine, f"""
            SELECT COUNT(*) FROM {nxt} a JOIN {cur} b ON a.node = b.node WHERE a.label <> b.label""")
        cur = nxt
        if changed == 0:
            break
    engine.table(out, f"SELECT node, label FROM {cur}")
    return rounds
