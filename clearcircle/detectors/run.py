"""Running the detectors over a folder of edge tables, on one engine, with progress reported by step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clearcircle.detectors import evasion, friend_spam, lockstep, mlm, shares
from clearcircle.detectors.engine import Engine
from clearcircle.detectors.finding import Finding


@dataclass(frozen=True)
class Detector:
    name: str
    spec: str  # the SPEC.md point it serves
    tables: tuple[str, ...]  # Parquet files (without .parquet) it reads
    fn: Callable[..., list[Finding]]


DETECTORS: dict[str, Detector] = {d.name: d for d in (
    Detector(lockstep.NAME, "S3", ("follows", "unfollows"), lockstep.detect),
    Detector(mlm.NAME, "S4", ("referrals",), mlm.detect),
    Detector(evasion.NAME, "S13", ("links", "accounts"), evasion.detect),
    Detector(shares.NAME, "S2", ("shares", "posts"), shares.detect),
    Detector(friend_spam.NAME, "S7", ("friend_requests",), friend_spam.detect),
)}


def load_tables(engine: Engine, folder: Path, names: tuple[str, ...]) -> None:
    for name in names:
        engine.load(name, Path(folder) / f"{name}.parquet")


def run_detectors(engine: Engine, folder: Path, only: list[str] | None = None,
                  progress: Callable[[str, str], None] = lambda _d, _s: None) -> dict[str, list[Finding]]:
    """Every detector (or those named in `only`) over the tables in `folder`: name -> findings."""
    names = only or list(DETECTORS)
    out: dict[str, list[Finding]] = {}
    for name in names:
        det = DETECTORS[name]
        load_tables(engine, folder, det.tables)
        progress(name, "start")
        out[name] = det.fn(engine, step=lambda s, n=name: progress(n, s))
        progress(name, "done")
    return out
