"""`clearcircle bench-load`: `serve` on loopback under load; throughput and latency figures, and a memory soak.

A benchmark, not a test: it starts the real server (uvicorn subprocess, SQLite store in a temp folder),
drives it for a bounded time with several keep-alive HTTP/1.1 connections, and prints requests/s, events/s
and p50/p90/p99 latency for single events and for batches, against the targets of issue 7 (>= 1,000
single-event requests/s with p99 <= 10 ms; >= 10,000 events/s through the batch endpoint). `--soak-minutes`
then keeps a steady load and samples the server's resident memory: start (after a warm-up), end, max, and
whether the end stays within 10% of the start.

The client is a few lines of asyncio streams on uvloop rather than an HTTP library: it runs on the same
cores as the server, and a client that costs a tenth of what it measures disturbs the figures least. The
server's own CPU seconds per request are printed too: that figure does not depend on what else the machine
is running.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from clearcircle.cli.common import console, fail
from clearcircle.devservers import free_port, stop_process
from clearcircle.synthetic import generate

SINGLE_RPS_TARGET = 1_000
SINGLE_P99_TARGET_MS = 10.0
BATCH_EPS_TARGET = 10_000
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """What one phase of load measured."""

    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    statuses: Counter[int] = field(default_factory=Counter)
    events: int = 0
    cpu_seconds: float = 0.0  # the server's

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class _Conn:
    """One keep-alive HTTP/1.1 connection; `post` returns (status, body). Content-Length responses only."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, key: str) -> None:
        self.reader, self.writer = reader, writer
        self.head = (f"Host: {host}\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\n").encode()

    @classmethod
    async def open(cls, host: str, port: int, key: str) -> _Conn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}", key)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
                          % (path.encode(), self.head, len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError("response without Content-Length")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _event_bodies(prefix: str) -> Iterator[bytes]:
    """An endless realistic mix (synthetic.generate), ids made unique per phase."""
    for round_ in itertools.count():
        for e in generate(200_000, seed=round_ + 1):
            e["id"] = f"{prefix}{round_}-{e['id']}"
            yield orjson.dumps(e)


async def _drive(host: str, port: int, key: str, phase: Phase, path: str, bodies: Iterator[bytes],
                 per_request: int, seconds: float, connections: int, pid: int) -> None:
    """`connections` workers post back to back until the time is up."""
    conns = [await _Conn.open(host, port, key) for _ in range(connections)]

    async def worker(conn: _Conn) -> None:
        while time.perf_counter() < deadline:
            if per_request == 1:
                body = next(bodies)
            else:
                body = b'{"events":[' + b",".join(itertools.islice(bodies, per_request)) + b"]}"
            sent = time.perf_counter()
            status, _ = await conn.post(path, body)
            phase.statuses[status] += 1
            if status == 200:
                phase.latencies.append(time.perf_counter() - sent)
                phase.events += per_request

    cpu0, started = _cpu_seconds(pid), time.perf_counter()
    deadline = started + seconds
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    phase.seconds = time.perf_counter() - started
    phase.cpu_seconds = _cpu_seconds(pid) - cpu0


def _report(phase: Phase, per_request: int) -> None:
    ok = len(phase.latencies)
    bad = {s: n for s, n in phase.statuses.items() if s != 200}
    console.print(f"[bold]{phase.name}[/bold]: {ok} requests in {phase.seconds:.1f}s = {phase.rps:,.0f} req/s, "
                  f"{phase.eps:,.0f} events/s" + (f"  (non-200: {bad})" if bad else ""))
    if ok:
        console.print(f"  latency ms: p50 {phase.pct(0.50):.2f}  p90 {phase.pct(0.90):.2f}  "
                      f"p99 {phase.pct(0.99):.2f}  max {max(phase.latencies) * 1000:.1f}  "
                      f"mean {statistics.fmean(phase.latencies) * 1000:.2f}")
        console.print(f"  server CPU: {phase.cpu_seconds:.1f}s = {phase.cpu_seconds / ok * 1e3:.2f} ms a request, "
                      f"{phase.cpu_seconds / max(phase.events, 1) * 1e6:.0f} µs an event "
                      f"(one free core: ~{ok / max(phase.cpu_seconds, 1e-9) * per_request:,.0f} events/s)")


def _verdict(name: str, met: bool, detail: str) -> None:
    console.print(f"  {'[green]met[/green]' if met else '[red]NOT met[/red]'} {name}: {detail}")


def _start_server(tmp: Path, port: int, log_level: str, rate: float) -> tuple[subprocess.Popen[bytes], str]:
    from clearcircle.store.repository import Store

    url = f"sqlite:///{tmp / 'load.db'}"
    store = Store(url)
    store.upgrade()
    _info, key = store.create_key("integrator", "bench-load")
    store.close()
    env = {**os.environ, "CLEARCIRCLE_DB_URL": url, "CLEARCIRCLE_KEY_FILE": str(tmp / "hash.key"),
           "CLEARCIRCLE_RATE_LIMIT_PER_S": str(rate)}
    env.pop("CLEARCIRCLE_REDIS_URL", None)
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", "from clearcircle.cli.main import app; app()", "serve",
                             "--port", str(port), "--log-level", log_level], cwd=tmp, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    return proc, key


async def _wait_up(host: str, port: int, proc: subprocess.Popen[bytes], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("serve exited at start")
        try:
            _r, w = await asyncio.open_connection(host, port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"serve did not listen within {limit:.0f}s")


async def _run(seconds: float, connections: int, batch: int, batch_connections: int, soak_minutes: float,
               log_level: str, rate: float) -> bool:
    host = "127.0.0.1"
    with tempfile.TemporaryDirectory(prefix="cc-load-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        proc, key = _start_server(tmp, port, log_level, rate)
        try:
            try:
                await _wait_up(host, port, proc)
            except RuntimeError as exc:
                raise fail(f"{exc}:\n{(tmp / 'serve.log').read_text(errors='replace')[-3000:]}") from None
            load = os.getloadavg()
            console.print(f"serve pid {proc.pid} on {host}:{port}, SQLite in a temp folder; {os.cpu_count()} cores, "
                          f"load average {load[0]:.1f} before the run (the machine is shared: figures vary with it)")
            warm = Phase("warm-up")
            await _drive(host, port, key, warm, "/v1/events", _event_bodies("w"), 1, min(3.0, seconds), 2, proc.pid)
            single = Phase(f"single events ({connections} connections)")
            await _drive(host, port, key, single, "/v1/events", _event_bodies("s"), 1, seconds, connections,
                         proc.pid)
            _report(single, 1)
            batches = Phase(f"batches of {batch} ({batch_connections} connections)")
            await _drive(host, port, key, batches, "/v1/events/batch", _event_bodies("b"), batch, seconds,
                         batch_connections, proc.pid)
            _report(batches, batch)
            console.print("[bold]targets[/bold]")
            _verdict("single-event throughput", single.rps >= SINGLE_RPS_TARGET,
                     f"{single.rps:,.0f} req/s (target >= {SINGLE_RPS_TARGET:,})")
            _verdict("single-event p99", single.pct(0.99) <= SINGLE_P99_TARGET_MS,
                     f"{single.pct(0.99):.2f} ms (target <= {SINGLE_P99_TARGET_MS:g} ms)")
            _verdict("batch throughput", batches.eps >= BATCH_EPS_TARGET,
                     f"{batches.eps:,.0f} events/s (target >= {BATCH_EPS_TARGET:,})")
            ok = (single.rps >= SINGLE_RPS_TARGET and single.pct(0.99) <= SINGLE_P99_TARGET_MS
                  and batches.eps >= BATCH_EPS_TARGET)
            if soak_minutes > 0:
                ok = await _soak(host, port, key, proc.pid, soak_minutes, connections) and ok
            return ok
        finally:
            stop_process(proc, 30)


async def _soak(host: str, port: int, key: str, pid: int, minutes: float, connections: int) -> bool:
    """Steady single-event load for `minutes`; RSS sampled every 5 s. Flat: end within 10% of the start,
    the start taken after a warm-up of a tenth of the soak (caches and the pool fill first)."""
    samples: list[tuple[float, float]] = []
    phase = Phase("soak")
    started = time.monotonic()

    async def sample() -> None:
        while True:
            samples.append((time.monotonic() - started, _rss_mb(pid)))
            await asyncio.sleep(5)

    sampler = asyncio.create_task(sample())
    try:
        await _drive(host, port, key, phase, "/v1/events", _event_bodies("k"), 1, minutes * 60, connections, pid)
    finally:
        sampler.cancel()
    samples.append((time.monotonic() - started, _rss_mb(pid)))
    warm = minutes * 60 / 10
    steady = [rss for at, rss in samples if at >= warm] or [samples[-1][1]]
    start, end, peak = steady[0], steady[-1], max(rss for _at, rss in samples)
    change = (end - start) / start * 100
    console.print(f"[bold]soak[/bold] {minutes:g} min, {len(phase.latencies):,} requests ({phase.rps:,.0f} req/s, "
                  f"p99 {phase.pct(0.99):.1f} ms); RSS MB: first {samples[0][1]:.0f}, start (after {warm:.0f}s) "
                  f"{start:.0f}, end {end:.0f}, max {peak:.0f}; end vs start {change:+.1f}%")
    flat = abs(change) <= 10
    _verdict("memory flat over the soak", flat, f"{change:+.1f}% (target within ±10%)")
    return flat


def bench_load(
    seconds: Annotated[float, typer.Option(min=1, max=600, help="seconds of load per phase")] = 10,
    connections: Annotated[int, typer.Option(min=1, max=256, help="keep-alive connections, single events")] = 8,
    batch: Annotated[int, typer.Option(min=2, max=1000, help="events per batch request")] = 500,
    batch_connections: Annotated[int, typer.Option(min=1, max=64, help="connections for batches")] = 2,
    soak_minutes: Annotated[float, typer.Option(min=0, max=240, help="then a memory soak this long")] = 0,
    log_level: Annotated[str, typer.Option(help="the server's log level (serve's default: info)")] = "info",
    rate_limit: Annotated[float, typer.Option(help="the server's per-key requests/s (high: limiter on, "
                                                   "never refusing)")] = 1e9,
) -> None:
    """Load `serve` on loopback: single events, then batches; p50/p99 latency, throughput, targets met or not."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    ok = runner(_run(seconds, connections, batch, batch_connections, soak_minutes, log_level, rate_limit))
    if not ok:
        console.print("some targets not met (exit 1)")
        raise typer.Exit(1)
