"""End-to-end throughput through Redis Streams with PostgreSQL as the store, beside one process's replay.

What `clearcircle bench --stream` measures (issue 10, "Speed and capacity"), in one run so the figures share
the machine's load: the same generated events (1) replayed by this process into a fresh database (parse,
decide, commit: `bench`'s end-to-end figure), then (2) published to a fresh stream and decided by 1, then 2,
`clearcircle worker` processes into a fresh database each, timed from the first XADD until the last decision
is on the decisions stream; `rounds` times over, alternating, so that the medians and each round's own
2-to-1 ratio are quoted, not one lucky or unlucky run. Servers: the URLs given, else throw-away ones
(clearcircle/devservers.py).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from clearcircle import devservers
from clearcircle.config import Settings
from clearcircle.events.schemas import Event, parse_event_json
from clearcircle.obs.procs import cpu_seconds_of, machine_busy_seconds
from clearcircle.service import open_service
from clearcircle.signals.warmup import warm_up
from clearcircle.stream.base import StreamError, route
from clearcircle.stream.redis_streams import StreamAddress, connect, open_partitions, publish
from clearcircle.synthetic import generate

TARGET_EVENTS_S = 5_000  # issue 10: with 2 workers on this 2-core machine
TARGET_SCALING = 1.6  # 2 workers at least this many times 1 worker
_HASH_KEY = "bench-stream-key"  # identifiers are hashed alike by the replay and every worker
_WORKER = [sys.executable, "-c", "from clearcircle.cli.main import app; app()", "worker"]


@dataclass
class Round:
    """One round's figures, all measured back to back: `stream` maps a worker count to its end-to-end rate."""

    replay: float = 0.0
    stream: dict[int, float] = field(default_factory=dict)
    # worker count -> (µs of CPU an event: the workers together, the whole machine while they ran)
    cpu: dict[int, tuple[float, float]] = field(default_factory=dict)
    # worker count -> (batches decided again after a conflict, batches), from the workers' stop lines
    redone: dict[int, tuple[int, int]] = field(default_factory=dict)

    def scaling(self) -> float | None:
        """2 workers' rate over 1 worker's, in this round (None unless both ran)."""
        two, one = self.stream.get(2), self.stream.get(1)
        return None if two is None or not one else two / one


@dataclass
class StreamBench:
    """Every round's figures, and their medians (the machine is shared and noisy: one round can be a fifth
    off the next, so targets are judged on medians, and the scaling on each round's own ratio)."""

    events: int
    rounds: list[Round] = field(default_factory=list)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)  # 1/5/15-minute load average at the end
    servers: str = ""

    @property
    def replay(self) -> float:
        return _median([r.replay for r in self.rounds if r.replay]) or 0.0

    @property
    def stream(self) -> dict[int, float]:
        counts = sorted({n for r in self.rounds for n in r.stream})
        return {n: _median([r.stream[n] for r in self.rounds if n in r.stream]) or 0.0 for n in counts}

    @property
    def cpu(self) -> dict[int, tuple[float, float]]:
        counts = sorted({n for r in self.rounds for n in r.cpu})
        return {n: (_median([r.cpu[n][0] for r in self.rounds if n in r.cpu]) or 0.0,
                    _median([r.cpu[n][1] for r in self.rounds if n in r.cpu]) or 0.0) for n in counts}

    @property
    def redone(self) -> dict[int, tuple[int, int]]:
        """Worker count -> (batches decided again after a conflict, batches), summed over the rounds."""
        counts = sorted({n for r in self.rounds for n in r.redone})
        return {n: (sum(r.redone[n][0] for r in self.rounds if n in r.redone),
                    sum(r.redone[n][1] for r in self.rounds if n in r.redone)) for n in counts}

    @property
    def scaling(self) -> float | None:
        """The median over the rounds of 2 workers' rate over 1 worker's in the same round."""
        return _median([x for r in self.rounds if (x := r.scaling()) is not None])

    def targets(self) -> list[tuple[str, bool | None]]:
        """(target, met) for issue 10's two targets, on the medians; None when a figure was not measured."""
        two, scaling = self.stream.get(2), self.scaling
        return [
            (f">= {TARGET_EVENTS_S:,} events/s with 2 workers", None if two is None else two >= TARGET_EVENTS_S),
            (f"2 workers >= {TARGET_SCALING} x 1 worker", None if scaling is None else scaling >= TARGET_SCALING),
        ]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


class _Databases:
    """Fresh PostgreSQL databases on one server, dropped at the end (the bench never reuses a store: a
    repeated event id would be a cheap duplicate, not a decision)."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            raise StreamError(f"--db {url!r}: the stream bench needs PostgreSQL (postgresql://...)")
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.base = parsed
        self.admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def create(self) -> str:
        name = f"cc_bench_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return self.base.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.names.clear()
        self.admin.dispose()


@contextmanager
def _servers(db_url: str | None, redis_url: str | None) -> Iterator[tuple[str, str, str]]:
    """(PostgreSQL URL, Redis URL, where they come from), starting throw-away servers for those not given."""
    with ExitStack() as stack:
        said = ("PostgreSQL " + ("given" if db_url else "throw-away") + ", Redis "
                + ("given" if redis_url else "throw-away"))
        if db_url is None:
            db_url = stack.enter_context(devservers.postgres()).url("postgres")
        if redis_url is None:
            redis_url = stack.enter_context(devservers.redis_server())
        yield db_url, redis_url, said


def _stream_url(redis_url: str, name: str) -> str:
    """The --stream URL of stream `name` on the Redis server of `redis_url` (its database kept)."""
    parts = urlsplit(redis_url)
    db = parts.path.strip("/") or "0"
    return f"{parts.scheme}://{parts.netloc}/{name}?db={db}"


def _settings(db_url: str, tmp: Path) -> Settings:
    return Settings(db_url=db_url, hash_key=_HASH_KEY, key_file=tmp / "unused.key")


def _replay(db_url: str, lines: Sequence[bytes], batch: int, tmp: Path) -> float:
    """Events/s of one process: parse every line, decide and commit `batch` per unit of work."""
    service = open_service(_settings(db_url, tmp))
    warm_up(batches=True)  # as the workers do before they join
    try:
        started = time.perf_counter()
        parsed = [parse_event_json(line) for line in lines]
        for i in range(0, len(parsed), batch):
            service.pipeline.submit(parsed[i : i + batch])
        return len(parsed) / (time.perf_counter() - started)
    finally:
        service.close()


def _wait(condition: Callable[[], bool], timeout: float, what: str, procs: Sequence[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [p.returncode for p in procs if p.poll() is not None]
        if dead:
            raise StreamError(f"a worker exited (code {dead[0]}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise StreamError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


def _through_stream(db_url: str, redis_url: str, lines: Sequence[bytes], events: Sequence[Event], workers: int,
                    batch: int, partitions: int, ordering: str, tmp: Path,
                    timeout: float) -> tuple[float, float, float, tuple[int, int]]:
    """Events/s from the first XADD until the last decision is out, with `workers` worker processes; µs of
    CPU an event spent by the workers and by the whole machine (them, PostgreSQL, Redis, the publisher and
    whatever else ran) over the same span (what the workers do not spend is what they share the cores with);
    and (batches decided again after a conflict, batches) from the workers' stop lines."""
    open_service(_settings(db_url, tmp)).close()  # migrate once, so the workers do not race to
    name = f"bench-{uuid.uuid4().hex[:8]}"
    url = _stream_url(redis_url, name)
    address = StreamAddress.parse(url)
    client = connect(address)
    env = {k: v for k, v in os.environ.items() if k != "CLEARCIRCLE_DB_URL"} | {"CLEARCIRCLE_HASH_KEY": _HASH_KEY}
    argv = [*_WORKER, "--stream", url, "--db", db_url, "--batch", str(batch),
            "--partitions", str(partitions), "--log-level", "info"]  # info: a few lines a worker, its stop line
    procs: list[subprocess.Popen] = []
    logs = [(tmp / f"{name}-{i}.log").open("wb") for i in range(workers)]
    try:
        count = open_partitions(client, address, partitions, ordering)
        items = [(home, line, waits) for (home, waits), line
                 in zip((route(e, count) for e in events), lines, strict=True)]
        procs = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log) for log in logs]
        try:
            _wait(lambda: client.zcard(f"{name}:workers") == workers, 120, f"{workers} worker(s) to join", procs)
            time.sleep(0.5)  # let them share the partitions out before the clock starts
            pids = [proc.pid for proc in procs]
            cpu0, machine0, started = cpu_seconds_of(pids), machine_busy_seconds(), time.perf_counter()
            publish(client, address, items)
            _wait(lambda: client.xlen(address.decisions_key) >= len(lines), timeout, "every decision", procs)
            elapsed = time.perf_counter() - started
            cpu, machine = cpu_seconds_of(pids) - cpu0, machine_busy_seconds() - machine0
        except StreamError as exc:
            tail = (tmp / f"{name}-0.log").read_text(errors="replace").strip()[-800:]
            raise StreamError(f"{exc}\nworker log (last lines):\n{tail}") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
        keys = list(client.scan_iter(match=f"{name}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    redone = _redone([log.name for log in logs], workers)  # the workers have stopped: their stop lines are out
    return len(lines) / elapsed, cpu * 1e6 / len(lines), machine * 1e6 / len(lines), redone


def _redone(paths: Sequence[str], workers: int) -> tuple[int, int]:
    """(batches decided again after a conflict, batches) summed over the workers' "worker stopped" log lines
    (JSON, clearcircle/obs/logs.py). StreamError if a worker stopped without one (it did not stop cleanly)."""
    stops = []
    for path in paths:
        for line in Path(path).read_bytes().splitlines():
            if line.startswith(b"{") and b'"worker stopped"' in line:
                stops.append(orjson.loads(line))
    if len(stops) != workers:
        raise StreamError(f"{len(stops)} of {workers} worker(s) logged their stop line")
    return sum(int(s["conflicts"]) for s in stops), sum(int(s["batches"]) for s in stops)


def run(events: int, db_url: str | None = None, redis_url: str | None = None, batch: int = 500,
        partitions: int = 16, worker_counts: Sequence[int] = (1, 2), timeout: float = 1800,
        progress: Callable[[str], None] = lambda _msg: None, ordering: str = "account",
        rounds: int = 1) -> StreamBench:
    """Measure replay and the stream with each worker count on the same generated events, `rounds` times
    over (each round all of them back to back, so a round's figures share the machine's load).

    Raises StreamError (a message for the user) when a server is missing, unreachable or refuses.
    """
    lines = [orjson.dumps(e) for e in generate(events)]
    parsed = [parse_event_json(line) for line in lines]
    result = StreamBench(events=len(lines))
    try:
        with tempfile.TemporaryDirectory(prefix="cc-bench-stream-") as tmp_dir, \
                _servers(db_url, redis_url) as (pg_url, r_url, said):
            tmp = Path(tmp_dir)
            result.servers = said
            try:
                redis.Redis.from_url(r_url, socket_connect_timeout=5).ping()
            except (redis.RedisError, ValueError) as exc:
                raise StreamError(f"cannot reach Redis at {r_url}: {exc}") from None
            databases = _Databases(pg_url)
            try:
                for r in range(1, rounds + 1):
                    of = f"round {r} of {rounds}: " if rounds > 1 else ""
                    progress(f"{of}replay: {len(lines):,} events in one process")
                    one = Round(replay=_replay(databases.create(), lines, batch, tmp))
                    for n in worker_counts:
                        progress(f"{of}stream: {len(lines):,} events, {n} worker process(es)")
                        rate, workers_us, machine_us, redone = _through_stream(
                            databases.create(), r_url, lines, parsed, n, batch, partitions, ordering, tmp, timeout)
                        one.stream[n], one.cpu[n], one.redone[n] = rate, (workers_us, machine_us), redone
                    result.rounds.append(one)
                    databases.drop_all()  # a round's databases are not needed by the next
            finally:
                databases.drop_all()
    except devservers.ServerUnavailable as exc:
        raise StreamError(f"{exc}; give --db postgresql://... and --redis redis://... instead") from None
    except StreamError:
        raise
    except Exception as exc:  # driver errors: unreachable server, bad credentials, no CREATEDB right
        raise StreamError(f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    result.load = os.getloadavg()
    return result
