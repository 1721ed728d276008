"""The lockstep benchmark: the same job on DuckDB, Spark and networkx, each in its own process.

Each measurement runs in a child process (`python -m clearcircle.detectors.bench ENGINE FOLDER`) so its peak
resident memory is its own (os.wait4 reports the child's maximum RSS); the child prints one JSON line with
its seconds, precision and recall against the folder's truth.json. Spark's JVM is a process of its own: the
figure given for Spark is the Python driver's only, so none is printed for it.

The networkx run is the same algorithm (baseline-judged cells on two grids, iterative pruning, partners,
k-core, connected components) in Python dictionaries with networkx for the graph steps: what one would write
without a query engine.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from clearcircle.detectors.generate import Truth
from clearcircle.detectors.lockstep import LockstepParams


@dataclass(frozen=True)
class Measured:
    engine: str
    ok: bool
    seconds: float = 0.0  # the detector alone
    startup_seconds: float = 0.0  # engine start and table registration
    peak_gib: float | None = None
    precision: float = 0.0
    recall: float = 0.0
    error: str = ""


def measure(engine: str, folder: Path, timeout: float = 3600, master: str | None = None) -> Measured:
    """Run one engine on the folder in a child process; its time, peak memory, precision and recall."""
    cmd = [sys.executable, "-m", "clearcircle.detectors.bench", engine, str(folder)] + ([master] if master else [])
    with tempfile.TemporaryFile() as out, open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(cmd, stdout=out, stderr=devnull)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _pid, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (KiB on Linux)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    if proc.returncode != 0:
        timed_out = " (timed out)" if proc.returncode < 0 else ""
        return Measured(engine, False, error=f"exit {proc.returncode}{timed_out}")
    data = json.loads(text.strip().splitlines()[-1])
    return Measured(engine, True, data["seconds"], data["startup_seconds"],
                    usage.ru_maxrss / 1024 / 1024 if engine != "spark" else None, data["precision"], data["recall"])


def _score(found: set[str], truth: Truth) -> tuple[float, float]:
    hits = len(found & truth.lockstep_accounts)
    return (hits / len(found) if found else 0.0), hits / max(1, len(truth.lockstep_accounts))


def _run_engine(engine: str, folder: Path, master: str | None) -> dict[str, float]:
    from clearcircle.detectors import lockstep
    from clearcircle.detectors.engine import open_engine

    t0 = time.perf_counter()
    eng = open_engine(engine, master)
    eng.load("follows", folder / "follows.parquet")
    eng.load("unfollows", folder / "unfollows.parquet")
    t1 = time.perf_counter()
    findings = lockstep.detect(eng)
    t2 = time.perf_counter()
    eng.close()
    precision, recall = _score({a for f in findings for a in f.accounts}, Truth.read(folder / "truth.json"))
    return {"seconds": t2 - t1, "startup_seconds": t1 - t0, "precision": precision, "recall": recall}


def lockstep_networkx(folder: Path, p: LockstepParams | None = None) -> set[str]:
    """The lockstep detector's steps in Python and networkx; returns the flagged accounts."""
    import networkx as nx
    import pyarrow.parquet as pq

    p = p or LockstepParams()
    table = pq.read_table(folder / "follows.parquet")
    src, dst, ts = (table.column(c).to_pylist() for c in ("src", "dst", "ts"))
    lo, half = min(ts), p.window_ms // 2
    windows = max(1.0, (max(ts) - lo) / p.window_ms)
    hs = [(x - lo) // half for x in ts]
    total = Counter(dst)
    cells: Counter = Counter()
    for (d, h), c in Counter(zip(dst, hs, strict=True)).items():
        cells[(d, 0, h // 2)] += c
        cells[(d, 1, (h + 1) // 2)] += c
    burst = {cell for cell, c in cells.items() if c >= p.min_cell and c >= p.burst_ratio * total[cell[0]] / windows}
    members: set[tuple] = set()
    for s, d, h in zip(src, dst, hs, strict=True):
        for cell in ((d, 0, h // 2), (d, 1, (h + 1) // 2)):
            if cell in burst:
                members.add((s, cell))
    while True:  # iterative pruning of accounts and cells
        targets = defaultdict(set)
        for s, cell in members:
            targets[s].add(cell[0])
        kept = {(s, cell) for s, cell in members if len(targets[s]) >= p.min_targets}
        size = Counter(cell for _s, cell in kept)
        kept = {(s, cell) for s, cell in kept if size[cell] >= p.min_cell}
        if kept == members:
            break
        members = kept
    by_cell = defaultdict(list)
    for s, cell in members:
        by_cell[cell].append(s)
    shared = defaultdict(set)
    for cell, accs in by_cell.items():
        for u, v in itertools.combinations(sorted(accs), 2):
            shared[(u, v)].add(cell[0])
    graph = nx.Graph((u, v) for (u, v), ts_ in shared.items() if len(ts_) >= p.min_targets)
    core = nx.k_core(graph, p.min_group - 1)
    return {str(a) for comp in nx.connected_components(core) if len(comp) >= p.min_group for a in comp}


def _run_networkx(folder: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    found = lockstep_networkx(folder)
    precision, recall = _score(found, Truth.read(folder / "truth.json"))
    return {"seconds": time.perf_counter() - t0, "startup_seconds": 0.0, "precision": precision, "recall": recall}


if __name__ == "__main__":  # the child process of `measure`
    kind, where = sys.argv[1], Path(sys.argv[2])
    result = _run_networkx(where) if kind == "networkx" else _run_engine(kind, where, (sys.argv[3:] or [None])[0])
    print(json.dumps(result))
