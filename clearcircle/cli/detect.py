"""`clearcircle detect`, `evaluate-graph`, `bench-graph`: the batch graph detectors (issue 9) from the command line.

Exit codes: 1 a target was not met (evaluate-graph), 2 bad input, an unusable store or an engine that cannot
start.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clearcircle.cli.common import DbOpt, PackOpt, console, err, fail, service_for

Engine = Annotated[str, typer.Option("--engine", help="duckdb (in-process, default) or spark")]
Master = Annotated[str | None, typer.Option("--master", help="Spark master URL (default local[2]); spark only")]
TARGET = 0.95  # precision and recall each detector must reach (issue 9)


def _since_ms(since: str | None) -> int | None:
    if since is None:
        return None
    try:
        when = datetime.fromisoformat(since)
    except ValueError:
        raise fail(f"--since {since!r} is not an RFC 3339 time or a date") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _open_engine(kind: str, master: str | None):  # noqa: ANN202
    from clearcircle.detectors.engine import EngineError, open_engine

    if kind not in ("duckdb", "spark"):
        raise fail(f"unknown engine {kind!r}: use duckdb or spark")
    if master and kind != "spark":
        raise fail("--master is for --engine spark")
    try:
        return open_engine(kind, master)
    except EngineError as exc:
        raise fail(str(exc)) from None


def _progress() -> Progress:
    return Progress(TextColumn("{task.description:<32}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=err, disable=not err.is_terminal)


def _run(engine, folder: Path):  # noqa: ANN001, ANN202
    """Every detector over the folder with a progress bar: name -> findings."""
    from clearcircle.detectors.run import DETECTORS, run_detectors

    with _progress() as progress:
        task = progress.add_task("detect", total=len(DETECTORS))

        def step(name: str, what: str) -> None:
            progress.update(task, description=f"{name}: {what}")
            if what == "done":
                progress.advance(task)

        try:
            return run_detectors(engine, folder, progress=step)
        except Exception as exc:  # an engine failure mid-run (Spark executor lost, out of disk)
            raise fail(f"the {engine.name} engine failed: {exc.__class__.__name__}: {str(exc)[:500]}") from None
        finally:
            engine.close()


def detect(
    since: Annotated[str | None, typer.Option(help="only events from this time on (RFC 3339 or a date, UTC)")] = None,
    engine: Engine = "duckdb",
    master: Master = None,
    out: Annotated[Path | None, typer.Option("--out", help="write one JSON line per finding here")] = None,
    work: Annotated[Path | None, typer.Option(help="export the Parquet edge tables here and keep them (on a "
                                                   "cluster: a folder every Spark executor can read)")] = None,
    db: DbOpt = None,
    pack: PackOpt = None,
) -> None:
    """Export the store's edges, run the graph detectors, persist findings, open review cases, label accounts."""
    from clearcircle.detectors.export import export
    from clearcircle.detectors.finding import Finding
    from clearcircle.detectors.run import DETECTORS
    from clearcircle.store.findings import persist
    from clearcircle.store.repository import now_ms

    since_ms = _since_ms(since)
    runner = _open_engine(engine, master)
    service = service_for(db, pack)
    started_ms, clock = now_ms(), time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="clearcircle-edges-") as tmp:
            folder = work or Path(tmp)
            try:
                rows = export(service.store, folder, since_ms)
            except OSError as exc:
                raise fail(f"cannot write the edge tables to {folder}: {exc.strerror}") from None
            found = _run(runner, folder)
        every: list[Finding] = [f for name in DETECTORS for f in found.get(name, [])]
        saved = persist(service.store, every, service.pack.settings, engine=engine, started_ms=started_ms,
                        at_ms=now_ms(), since_ms=since_ms)
    finally:
        service.close()
    if out is not None:
        try:
            with out.open("wb") as sink:
                for f in every:
                    sink.write(orjson.dumps(f.to_json()) + b"\n")
        except OSError as exc:
            raise fail(f"cannot write {out}: {exc.strerror}") from None
    table = Table(title=f"run {saved.run_id} on {engine}: {sum(rows.values()):,} rows exported "
                        f"({', '.join(f'{k} {v:,}' for k, v in rows.items())}), {time.perf_counter() - clock:.1f}s")
    for col in ("detector", "norm", "findings", "accounts", "targets", "top score"):
        table.add_column(col, justify="left" if col in ("detector", "norm") else "right")
    for name, det in DETECTORS.items():
        fs = found.get(name, [])
        table.add_row(name, det.spec, str(len(fs)), str(len({a for f in fs for a in f.accounts})),
                      str(len({t for f in fs for t in f.targets})), f"{fs[0].score:.3f}" if fs else "")
    console.print(table)
    console.print(f"{saved.cases} review case(s) opened, {saved.labels} label(s) applied"
                  + (f"; findings written to {out}" if out else ""))


def evaluate_graph(
    edges: Annotated[int, typer.Option(min=10_000, max=100_000_000, help="edge rows to generate")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="generator seed")] = 7,
    engine: Engine = "duckdb",
    master: Master = None,
    keep: Annotated[Path | None, typer.Option(help="write the generated tables here (kept)")] = None,
) -> None:
    """Generate a graph with planted abuse and print each detector's precision and recall. Exit 1 if one is
    below 0.95."""
    from clearcircle.detectors.evaluate import score
    from clearcircle.detectors.generate import generate_graph

    runner = _open_engine(engine, master)
    with tempfile.TemporaryDirectory(prefix="clearcircle-graph-") as tmp:
        folder = keep or Path(tmp)
        clock = time.perf_counter()
        truth = generate_graph(edges, folder, seed=seed)
        made = time.perf_counter() - clock
        clock = time.perf_counter()
        found = _run(runner, folder)
        ran = time.perf_counter() - clock
    table = Table(title=f"{edges:,} edges (seed {seed}): generated in {made:.1f}s, detected on {engine} in {ran:.1f}s")
    for col in ("detector", "unit", "flagged", "planted", "precision", "recall", f"≥ {TARGET}"):
        table.add_column(col, justify="left" if col in ("detector", "unit") else "right")
    missed = False
    for s in score(found, truth):
        met = s.precision >= TARGET and s.recall >= TARGET
        missed |= not met
        table.add_row(s.detector, s.unit, str(s.predicted), str(s.planted), f"{s.precision:.4f}", f"{s.recall:.4f}",
                      "[green]met[/green]" if met else "[red]NOT met[/red]")
    console.print(table)
    if missed:
        raise typer.Exit(1)


def bench_graph(
    edges: Annotated[int, typer.Option(min=10_000, max=100_000_000, help="follow edges for DuckDB and Spark")]
    = 10_000_000,
    networkx_edges: Annotated[int, typer.Option(min=0, help="follow edges for networkx (0: skip)")] = 1_000_000,
    spark: Annotated[bool, typer.Option(help="measure Spark local too")] = True,
    master: Master = None,
    seed: Annotated[int, typer.Option(help="generator seed")] = 7,
    timeout: Annotated[float, typer.Option(help="seconds each engine may take")] = 1800,
) -> None:
    """The lockstep detector on DuckDB (time and peak memory against the targets), Spark local and networkx."""
    from clearcircle.detectors.bench import measure
    from clearcircle.detectors.generate import generate_graph

    target_s, target_gib = (5.0, 1.5) if edges <= 10_000_000 else (60.0, 8.0)
    results = []
    with tempfile.TemporaryDirectory(prefix="clearcircle-bench-") as tmp:
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        with console.status(f"generating {edges:,} follow edges"):
            generate_graph(edges, big, seed=seed, follows_only=True)
        with console.status("DuckDB"):
            results.append((edges, measure("duckdb", big, timeout)))
        if spark:
            with console.status(f"Spark {master or 'local[2]'}"):
                results.append((edges, measure("spark", big, timeout, master)))
        if networkx_edges:
            with console.status(f"networkx on {networkx_edges:,} follow edges"):
                generate_graph(networkx_edges, small, seed=seed, follows_only=True)
                results.append((networkx_edges, measure("networkx", small, timeout)))
    table = Table(title=f"lockstep detector (bought followers, S3); targets for DuckDB at {edges:,} edges: "
                        f"≤ {target_s:g} s and ≤ {target_gib:g} GiB")
    for col in ("engine", "edges", "seconds", "start-up s", "peak GiB", "precision", "recall", "target"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for n, m in results:
        if not m.ok:
            table.add_row(m.engine, f"{n:,}", m.error, "", "", "", "", "")
            continue
        verdict = ""
        if m.engine == "duckdb":
            met = m.seconds <= target_s and (m.peak_gib or 0) <= target_gib and min(m.precision, m.recall) >= TARGET
            verdict = "[green]met[/green]" if met else "[red]NOT met[/red]"
        table.add_row(m.engine, f"{n:,}", f"{m.seconds:.2f}", f"{m.startup_seconds:.2f}",
                      "" if m.peak_gib is None else f"{m.peak_gib:.2f}", f"{m.precision:.4f}", f"{m.recall:.4f}",
                      verdict)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the commands to the main app."""
    app.command("detect")(detect)
    app.command("evaluate-graph")(evaluate_graph)
    app.command("bench-graph")(bench_graph)
