"""`clearcircle publish`, `worker` and `stream-status`: events through Redis Streams to many workers
(docs/stream.md)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from array import array
from pathlib import Path
from typing import Annotated

import orjson
import redis
import typer
from rich.table import Table

from clearcircle.cli.common import DbOpt, PackOpt, console, fail, say, service_for
from clearcircle.events.schemas import EventError, parse_event_json
from clearcircle.signals.warmup import warm_up
from clearcircle.stream.base import StreamError, actor_hash, partition_account, route_hashes, shared_keys
from clearcircle.stream.redis_streams import (
    ORDERINGS,
    RedisSource,
    StreamAddress,
    connect,
    open_partitions,
    publish,
    worker_id,
)
from clearcircle.stream.sinks import RedisDecisionStream, WebhookDeliverer
from clearcircle.stream.status import StreamStatus, read_status
from clearcircle.stream.worker import Worker

StreamOpt = Annotated[str, typer.Option("--stream", help="redis://HOST:PORT/NAME (NAME: the stream's name)")]
PartitionsOpt = Annotated[int | None, typer.Option(
    "--partitions", help="partition count, fixed on the stream's first use (default 16)")]
OrderingOpt = Annotated[str | None, typer.Option(
    "--ordering", help="account (each account's events in order; the default) or exact (decisions equal to one "
                       "replay's, workers wait for each other: docs/stream.md); fixed on the stream's first use")]


def _address(url: str) -> StreamAddress:
    try:
        return StreamAddress.parse(url)
    except StreamError as exc:
        raise fail(str(exc)) from None


def _scan(path: Path) -> tuple[array, dict[int, tuple[int, ...]]]:
    """First pass, with replay's parser: every line valid, or the file is refused whole. Returns each valid
    line's hash of the account it is about (`partition_account`; blank lines: none) and, by line, the hashes
    of what else it touches (`shared_keys`), so the second pass need not parse again."""
    hashes, shared, problems = array("Q"), {}, []
    try:
        with path.open("rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    event = parse_event_json(line)
                    if keys := shared_keys(event):
                        shared[len(hashes)] = tuple(map(actor_hash, keys))
                    hashes.append(actor_hash(partition_account(event)))
                except EventError as exc:
                    problems.append(f"{path}:{lineno}: {exc}")
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from None
    if problems:
        shown = "\n".join(problems[:20]) + (f"\n… and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise fail(f"{len(problems)} invalid event(s), nothing published:\n{shown}")
    return hashes, shared


def publish_cmd(
    events_file: Annotated[Path, typer.Argument(metavar="EVENTS.jsonl", help="one event per line")],
    stream: StreamOpt,
    partitions: PartitionsOpt = None,
    ordering: OrderingOpt = None,
) -> None:
    """Put every event of a JSONL file on the stream, each in the partition of the account it is about; the
    file is refused whole (nothing published) if any line is invalid."""
    address = _address(stream)
    hashes, shared = _scan(events_file)
    try:
        client = connect(address)
        count = open_partitions(client, address, partitions, ordering)
    except StreamError as exc:
        raise fail(str(exc)) from None
    started = time.perf_counter()

    def items():  # noqa: ANN202
        n = 0
        with events_file.open("rb") as fh:
            for line in fh:
                if line.strip():
                    home, waits = route_hashes(hashes[n], shared.get(n, ()), count)
                    yield home, line.strip(), waits
                    n += 1

    try:
        published = publish(client, address, items())
    except redis.RedisError as exc:
        raise fail(f"Redis failed while publishing: {exc}; part of the file may be on the stream. Publishing "
                   "the whole file again is safe: a repeated event id gets its first decision back") from None
    finally:
        client.close()
    seconds = time.perf_counter() - started
    say(("published", "green"), f"{published} events to {address.name} ({count} partitions) in {seconds:.1f}s "
        f"({published / max(seconds, 1e-9):,.0f}/s)", console)


def worker_cmd(
    stream: StreamOpt,
    db: DbOpt = None,
    pack: PackOpt = None,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="events per transaction")] = 500,
    claim_timeout: Annotated[float, typer.Option(
        min=0.5, help="seconds after which a dead worker's partitions and pending events are taken over")] = 30.0,
    partitions: PartitionsOpt = None,
    ordering: OrderingOpt = None,
    decisions_maxlen: Annotated[int, typer.Option(
        min=1000, help="the decisions stream is trimmed to about this many entries")] = 1_000_000,
    webhook: Annotated[str | None, typer.Option(help="also POST each decision to this URL")] = None,
    webhook_secret_file: Annotated[Path | None, typer.Option(
        help="file holding the HMAC secret of the X-ClearCircle-Signature header")] = None,
    webhook_attempts: Annotated[int, typer.Option(min=1, help="tries before a decision is set aside")] = 12,
    log_level: Annotated[str, typer.Option(help="JSON log lines at this level and above (stderr)")] = "info",
) -> None:
    """Decide events from the stream until SIGTERM/SIGINT (then finish the batch, hand partitions over, exit 0).

    Everything deciding loads lazily is loaded before the worker joins (`warm_up`): a joined worker may be
    handed partitions at once, and its first batch must not wait seconds for a model."""
    from clearcircle.obs.logs import configure as configure_logging

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # first thing: a stop while starting is a clean stop
        signal.signal(signum, lambda *_: stop.set())
    address = _address(stream)
    secret = _webhook_secret(webhook, webhook_secret_file)
    configure_logging(log_level)
    log = logging.getLogger(__name__)
    service = service_for(db, pack)
    threads: list[threading.Thread] = []
    source: RedisSource | None = None
    try:
        try:
            client = connect(address)
            count = open_partitions(client, address, partitions, ordering)  # checks the stream; does not join it
        except StreamError as exc:
            raise fail(str(exc)) from None
        started = time.perf_counter()
        loaded = warm_up(batches=True)
        took = time.perf_counter() - started
        log.info("worker ready: loaded %s in %.1fs; joining %s", ", ".join(loaded), took, address.name,
                 extra={"warm_up_s": loaded})
        if stop.is_set():  # stopped while loading: leave without ever joining
            client.close()
            raise typer.Exit(0)
        me = worker_id()
        source = RedisSource(client, address, count, lease_ms=int(claim_timeout * 1000), consumer=me,
                             unit=batch)  # joins
        if webhook and secret is not None:
            deliverer = WebhookDeliverer(client, address, webhook, secret, me, claim_ms=int(claim_timeout * 1000),
                                         max_attempts=webhook_attempts)
            threads.append(threading.Thread(target=deliverer.run, args=(stop,), name="webhook", daemon=True))
            threads[-1].start()
        say(("ready", "green"), f"worker {me} joined {address.name} ({count} partitions), pack "
            f"{service.pack.version[:19]}…; loaded {', '.join(loaded) or 'nothing'} first ({took:.1f}s)")
        worker = Worker(source, service.pipeline.submit, [RedisDecisionStream(client, address, decisions_maxlen)],
                        batch=batch)
        stats = worker.run(stop)
    finally:
        stop.set()
        if source is not None:
            source.close()
        for thread in threads:
            thread.join(timeout=15)
        service.close()
    conflicts = service.pipeline.conflicts
    log.info("worker stopped", extra={"decided": stats.decided, "batches": stats.batches, "conflicts": conflicts})
    say(("stopped", "green"), f"{stats.decided} decisions in {stats.batches} batches, {stats.duplicates} "
        f"already decided, {stats.dead} not events, {conflicts} batches decided again after a conflict")


def _webhook_secret(url: str | None, path: Path | None) -> bytes | None:
    if url is None:
        if path is not None:
            raise fail("--webhook-secret-file needs --webhook")
        return None
    if not url.startswith(("http://", "https://")):
        raise fail(f"--webhook {url!r}: expected an http:// or https:// URL")
    if path is None:
        raise fail("--webhook needs --webhook-secret-file (the receiver checks the signature with it)")
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from None
    if not secret:
        raise fail(f"empty webhook secret file: {path}")
    return secret


def bench_stream(events: int, db: str | None, redis_url: str | None, batch: int, partitions: int = 16,
                 ordering: str = "account", rounds: int = 3) -> None:
    """`clearcircle bench --stream`: events/s through Redis Streams (PostgreSQL store) with 1 and 2 worker
    processes beside one process's replay, measured in the same run, and issue 10's targets met or not."""
    from clearcircle.stream import bench

    if db is not None and not db.startswith("postgresql"):
        raise fail(f"--db {db!r}: the stream bench needs PostgreSQL (postgresql://USER@HOST:PORT/DB)")
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://")):
        raise fail(f"--redis {redis_url!r}: expected redis://HOST:PORT[/DB]")
    if ordering not in ORDERINGS:
        raise fail(f"--ordering {ordering!r}: expected one of {', '.join(ORDERINGS)}")
    try:
        result = bench.run(events, db, redis_url, batch=batch, partitions=partitions, ordering=ordering,
                           rounds=rounds, progress=lambda msg: console.print(f"[dim]{msg}…[/dim]"))
    except StreamError as exc:
        raise fail(f"stream bench: {exc}") from None
    one, five, fifteen = result.load
    console.print(f"events: {result.events:,}  batch: {batch}  partitions: {partitions}  ordering: {ordering}  "
                  f"rounds: {rounds}  ({result.servers})")
    for r, got in enumerate(result.rounds, 1):
        ratio = got.scaling()
        console.print(f"round {r}: replay {got.replay:,.0f}, " + ", ".join(
            f"{_workers(n)} {rate:,.0f}" for n, rate in sorted(got.stream.items()))
            + " events/s" + (f"  (2 workers / 1: {ratio:.3f})" if ratio is not None else ""))
    console.print(f"median of {len(result.rounds)} round{'s' if len(result.rounds) > 1 else ''}:")
    console.print(f"replay, 1 process: {result.replay:,.0f} events/s")
    cores = os.cpu_count() or 1
    for n, rate in sorted(result.stream.items()):
        workers_us, machine_us = result.cpu[n]
        console.print(f"stream, {_workers(n)}: {rate:,.0f} events/s  (CPU an event: workers "
                      f"{workers_us:,.0f} µs, whole machine {machine_us:,.0f} µs; all {cores} cores busy at that "
                      f"cost: {cores * 1e6 / max(machine_us, 1e-9):,.0f} events/s)")
    for n, (again, batches) in sorted(result.redone.items()):
        console.print(f"stream, {_workers(n)}: {again} of {batches} batches decided again after "
                      f"a conflict with another worker (all rounds)")
    if result.scaling is not None:
        # three decimals: a median of 1.596, printed 1.60, read as met when it is not
        console.print(f"2 workers / 1 worker, the median of each round's own ratio: {result.scaling:.3f}")
    for target, met in result.targets():
        console.print(f"target {target}: " + {True: "[green]met[/green]", False: "[red]not met[/red]",
                                              None: "not measured"}[met])
    console.print(f"load average: {one:.2f} {five:.2f} {fifteen:.2f} (the machine is shared: figures under load)")


def _workers(n: int) -> str:
    return f"{n} worker{'s' if n > 1 else ''}"


def status_cmd(
    stream: StreamOpt,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Who is working on the stream: live workers, each partition's owner, planned owner, backlog and pending
    entries, and what needs a person (a partition with a backlog and no live owner...). Reads only."""
    address = _address(stream)
    try:
        client = connect(address)
    except StreamError as exc:
        raise fail(str(exc)) from None
    try:
        status = read_status(client, address)
    except StreamError as exc:
        raise fail(str(exc)) from None
    except redis.RedisError as exc:
        raise fail(f"Redis failed while reading the stream: {exc}") from None
    finally:
        client.close()
    if as_json:
        console.print_json(orjson.dumps(status.to_dict()).decode())
    else:
        _print_status(status)


def _print_status(status: StreamStatus) -> None:
    workers = Table(title=f"stream {status.name}: {len(status.workers)} live worker(s), ordering {status.ordering}",
                    title_justify="left")
    for col in ("worker", "heartbeat left", "partitions", "backlog"):
        workers.add_column(col, justify="right" if col != "worker" else "left")
    for w in status.workers:
        workers.add_row(w.id, f"{w.heartbeat_left_ms / 1000:.1f} s", ",".join(map(str, w.partitions)) or "-",
                        f"{w.backlog:,}")
    console.print(workers)
    plan = f"plan by {status.plan_by}" if status.plan_by else "no plan in force: shared by i % n"
    parts = Table(title=f"{len(status.partitions)} partitions, {status.backlog:,} event(s) to decide ({plan})",
                  title_justify="left")
    for col in ("partition", "owner", "planned", "backlog", "pending", "kept in Redis"):
        parts.add_column(col, justify="left" if col in ("owner", "planned") else "right")
    for p in status.partitions:
        parts.add_row(str(p.partition), p.owner or "-", p.planned or "-", f"{p.backlog:,}", f"{p.pending:,}",
                      f"{p.kept:,}")
    console.print(parts)
    console.print(f"decisions stream: {status.decisions:,} kept; set aside as not events: {status.dead:,}",
                  highlight=False)
    for problem in status.problems:
        say(("problem:", "yellow"), problem, console)


def register(app: typer.Typer) -> None:
    app.command("publish")(publish_cmd)
    app.command("worker")(worker_cmd)
    app.command("stream-status")(status_cmd)
