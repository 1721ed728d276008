"""`clearcircle bench-load`: `serve` on loopback under load; throughput and latency figures, and a memory soak.

A benchmark, not a test: it starts the real server (uvicorn subprocess, SQLite store in a temp folder),
drives it for a bounded time with several keep-alive HTTP/1.1 connections, and prints requests/s, events/s
and p50/p90/p99 latency for single events and for batches, against the targets of issue 7 (>= 1,000
single-event requests/s with p99 <= 10 ms; >= 10,000 events/s through the batch endpoint). `--soak-minutes`
then keeps a steady load and samples the server's resident memory: start (after a warm-up), end, max, and
whether the end stays within 10% of the start.

The client runs on the same cores as the server, so it should cost as little as it can: `wrk` (Debian
package `wrk`, C, event-driven) when it is installed, fed pre-generated bodies by a small Lua script; else a
few lines of asyncio streams on uvloop (`--client python`, always used for the soak). The report says which.
`--workers N` runs `serve --workers N` (N processes; on SQLite they take turns at the write lock). The
server's own CPU seconds per request (all its processes) are printed too: that figure depends much less than
throughput on what else the machine is running.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
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
from clearcircle.obs.procs import cpu_seconds, rss_mb
from clearcircle.synthetic import generate

SINGLE_RPS_TARGET = 1_000
SINGLE_P99_TARGET_MS = 10.0
BATCH_EPS_TARGET = 10_000


@dataclass
class Phase:
    """What one phase of load measured."""

    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    statuses: Counter[int] = field(default_factory=Counter)
    events: int = 0
    cpu_seconds: float = 0.0  # the server's
    summary: dict[float, float] | None = None  # wrk's: quantile -> ms (its latencies are not kept one by one)
    answered: int = 0  # requests answered 200, when `latencies` is not kept (wrk)

    @property
    def ok(self) -> int:
        return self.answered or len(self.latencies)

    def pct(self, q: float) -> float:
        if self.summary is not None:
            return self.summary.get(q, float("nan"))
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

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


def _event_bodies(prefix: str) -> Iterator[bytes]:
    """An endless realistic mix (synthetic.generate) on registered accounts, ids made unique per phase.

    A generated history opens with its accounts' registrations (5,000): those are sent once, untimed, before
    the phases (`_registrations`, `_register`), and left out here. Up to 2026-11-29 they were not: a timed
    phase of ~7,000 single events was then 5,000 registrations and ~2,000 of the mix."""
    for round_ in itertools.count():
        for e in generate(200_000, seed=round_ + 1):
            if e["type"] == "account_registered":
                continue
            e["id"] = f"{prefix}{round_}-{e['id']}"
            yield orjson.dumps(e)


def _registrations() -> list[bytes]:
    """The registrations the mix's accounts are registered by (the opening of the first generated history)."""
    return [orjson.dumps(e) for e in itertools.takewhile(lambda e: e["type"] == "account_registered",
                                                          generate(200_000, seed=1))]


async def _register(host: str, port: int, key: str, per_request: int = 500) -> int:
    """Send the registrations in batches before any timed phase; how many were decided."""
    conn = await _Conn.open(host, port, key)
    bodies = _registrations()
    try:
        for i in range(0, len(bodies), per_request):
            status, answer = await conn.post("/v1/events/batch",
                                             b'{"events":[' + b",".join(bodies[i:i + per_request]) + b"]}")
            if status != 200:
                raise RuntimeError(f"registering the accounts: HTTP {status}: {answer[:300]!r}")
    finally:
        conn.close()
    return len(bodies)


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

    cpu0, started = cpu_seconds(pid), time.perf_counter()
    deadline = started + seconds
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    phase.seconds = time.perf_counter() - started
    phase.cpu_seconds = cpu_seconds(pid) - cpu0


_WRK_SCRIPT = r"""
-- bench-load's wrk script: POST the bodies of a file (one a line) in turn; print a JSON summary at the end
local path, key, bodies, i = nil, nil, {}, 0
function init(args)
  path, key = args[1], args[2]
  for line in io.lines(args[3]) do bodies[#bodies + 1] = line end
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", path, {["X-API-Key"] = key, ["Content-Type"] = "application/json"}, bodies[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'CCJSON {"requests":%d,"duration_us":%d,"status":%d,"socket":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


async def _drive_wrk(tmp: Path, host: str, port: int, key: str, phase: Phase, path: str, bodies: Iterator[bytes],
                     per_request: int, seconds: float, connections: int, pid: int, rate_cap: float) -> None:
    """The same phase driven by wrk (one thread): bodies generated beforehand, `rate_cap` requests/s' worth of
    them (wrk cycles through the file, so more requests than that would repeat event ids: reported)."""
    script, data = tmp / "bench.lua", tmp / f"bodies-{phase.name.split()[0]}.txt"
    script.write_text(_WRK_SCRIPT)
    count = max(100, int(rate_cap * seconds))
    with data.open("wb") as fh:
        for _ in range(count):
            if per_request == 1:
                fh.write(next(bodies) + b"\n")
            else:
                fh.write(b'{"events":[' + b",".join(itertools.islice(bodies, per_request)) + b"]}\n")
    cpu0, started = cpu_seconds(pid), time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(script),
        f"http://{host}:{port}", "--", path, key, str(data), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    phase.seconds = time.perf_counter() - started
    phase.cpu_seconds = cpu_seconds(pid) - cpu0
    line = next((ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("CCJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise fail(f"wrk failed (exit {proc.returncode}):\n{out.decode(errors='replace')[-2000:]}")
    got = orjson.loads(line[len("CCJSON "):])
    phase.seconds = got["duration_us"] / 1e6
    phase.answered = got["requests"] - got["status"]  # the server answers 200 or an error status
    phase.events = phase.answered * per_request
    phase.statuses[200] = phase.answered
    if got["status"]:
        phase.statuses[0] = got["status"]  # non-2xx, statuses not told apart by wrk
    if got["socket"]:
        phase.statuses[-1] = got["socket"]  # connect/read/write errors and timeouts
    phase.summary = {0.5: got["p50"] / 1000, 0.9: got["p90"] / 1000, 0.99: got["p99"] / 1000,
                     1.0: got["max"] / 1000, -1.0: got["mean"] / 1000}
    if got["requests"] > count:
        console.print(f"  [yellow]note[/yellow]: wrk sent {got['requests']:,} requests from {count:,} bodies; the "
                      "rest repeated event ids (answered as duplicates, cheaper than new events)")


def _report(phase: Phase, per_request: int) -> None:
    ok = phase.ok
    bad = {s: n for s, n in phase.statuses.items() if s != 200}
    console.print(f"[bold]{phase.name}[/bold]: {ok} requests in {phase.seconds:.1f}s = {phase.rps:,.0f} req/s, "
                  f"{phase.eps:,.0f} events/s" + (f"  (non-200: {bad}; 0: any non-2xx with wrk, -1: socket "
                                                   "errors)" if bad else ""))
    if ok:
        top, mean = ((phase.pct(1.0), phase.pct(-1.0)) if phase.summary is not None else
                     (max(phase.latencies) * 1000, statistics.fmean(phase.latencies) * 1000))
        console.print(f"  latency ms: p50 {phase.pct(0.50):.2f}  p90 {phase.pct(0.90):.2f}  "
                      f"p99 {phase.pct(0.99):.2f}  max {top:.1f}  mean {mean:.2f}")
        console.print(f"  server CPU: {phase.cpu_seconds:.1f}s = {phase.cpu_seconds / ok * 1e3:.2f} ms a request, "
                      f"{phase.cpu_seconds / max(phase.events, 1) * 1e6:.0f} µs an event "
                      f"(one free core: ~{ok / max(phase.cpu_seconds, 1e-9) * per_request:,.0f} events/s)")


def _verdict(name: str, met: bool, detail: str) -> None:
    console.print(f"  {'[green]met[/green]' if met else '[red]NOT met[/red]'} {name}: {detail}")


def _start_server(tmp: Path, port: int, log_level: str, rate: float,
                  workers: int) -> tuple[subprocess.Popen[bytes], str]:
    from clearcircle.store.repository import Store

    url = f"sqlite:///{tmp / 'load.db'}"
    store = Store(url)
    store.upgrade()
    _info, key = store.create_key("integrator", "bench-load")
    store.close()
    env = {**os.environ, "CLEARCIRCLE_DB_URL": url, "CLEARCIRCLE_KEY_FILE": str(tmp / "hash.key"),
           "CLEARCIRCLE_RATE_LIMIT_PER_S": str(rate)}
    env.pop("CLEARCIRCLE_REDIS_URL", None)
    env.pop("CLEARCIRCLE_STREAM_URL", None)
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", "from clearcircle.cli.main import app; app()", "serve",
                             "--port", str(port), "--log-level", log_level, "--workers", str(workers)], cwd=tmp,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, key


async def _healthz_worker(host: str, port: int) -> int | None:
    """The pid of the worker that answered GET /healthz on a new connection, None if none answered."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(orjson.loads(body)["worker"]) if head.startswith(b"HTTP/1.1 200") else None
    except (OSError, TimeoutError, ValueError, KeyError, orjson.JSONDecodeError):
        return None
    finally:
        writer.close()


async def _wait_up(host: str, port: int, proc: subprocess.Popen[bytes], workers: int, limit: float = 180) -> None:
    """Until /healthz has been answered by `workers` different processes (each imported the engine)."""
    deadline, seen = time.monotonic() + limit, set()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("serve exited at start")
        pid = await _healthz_worker(host, port)
        if pid is None:
            await asyncio.sleep(0.2)
            continue
        seen.add(pid)
        if len(seen) >= workers:
            return
    raise RuntimeError(f"serve did not answer from {workers} worker(s) within {limit:.0f}s (seen: {len(seen)})")


async def _run(seconds: float, connections: int, batch: int, batch_connections: int, soak_minutes: float,
               log_level: str, rate: float, workers: int, client: str) -> bool:
    host = "127.0.0.1"
    with tempfile.TemporaryDirectory(prefix="cc-load-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        proc, key = _start_server(tmp, port, log_level, rate, workers)
        try:
            try:
                await _wait_up(host, port, proc, workers)
            except RuntimeError as exc:
                raise fail(f"{exc}:\n{(tmp / 'serve.log').read_text(errors='replace')[-3000:]}") from None
            load = os.getloadavg()
            console.print(f"serve pid {proc.pid} on {host}:{port}, {workers} worker process(es), SQLite in a temp "
                          f"folder; {os.cpu_count()} cores, load average {load[0]:.1f} before the run (the machine "
                          f"is shared: figures vary with it); client: "
                          + ("wrk (one thread)" if client == "wrk" else "bench-load's own (asyncio on uvloop)"))

            async def drive(phase: Phase, path: str, bodies: Iterator[bytes], per_request: int, secs: float,
                            conns: int, cap: float) -> None:
                if client == "wrk":
                    await _drive_wrk(tmp, host, port, key, phase, path, bodies, per_request, secs, conns, proc.pid,
                                     cap)
                else:
                    await _drive(host, port, key, phase, path, bodies, per_request, secs, conns, proc.pid)

            try:
                registered = await _register(host, port, key)
            except (RuntimeError, OSError) as exc:
                raise fail(str(exc)) from None
            console.print(f"{registered:,} accounts registered (untimed); the phases send the traffic that follows")
            warm = Phase("warm-up")
            await drive(warm, "/v1/events", _event_bodies("w"), 1, min(3.0, seconds), 2, 3000)
            single = Phase(f"single events ({connections} connections)")
            await drive(single, "/v1/events", _event_bodies("s"), 1, seconds, connections, 3000)
            _report(single, 1)
            batches = Phase(f"batches of {batch} ({batch_connections} connections)")
            await drive(batches, "/v1/events/batch", _event_bodies("b"), batch, seconds, batch_connections,
                        max(2, 15_000 / batch))
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
            samples.append((time.monotonic() - started, rss_mb(pid)))
            await asyncio.sleep(5)

    sampler = asyncio.create_task(sample())
    try:
        await _drive(host, port, key, phase, "/v1/events", _event_bodies("k"), 1, minutes * 60, connections, pid)
    finally:
        sampler.cancel()
    samples.append((time.monotonic() - started, rss_mb(pid)))
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
    batch_connections: Annotated[int, typer.Option(min=0, max=64, help="connections for batches (0: two per "
                                                                     "server worker)")] = 0,
    soak_minutes: Annotated[float, typer.Option(min=0, max=240, help="then a memory soak this long")] = 0,
    log_level: Annotated[str, typer.Option(help="the server's log level (serve's default: info)")] = "info",
    rate_limit: Annotated[float, typer.Option(help="the server's per-key requests/s (high: limiter on, "
                                                   "never refusing)")] = 1e9,
    workers: Annotated[int, typer.Option(min=1, max=16, help="serve --workers N (SQLite: one writer at a "
                                                            "time)")] = 1,
    client: Annotated[str, typer.Option(help="load generator: wrk (Debian package wrk), python (bench-load's "
                                             "own), auto: wrk when installed")] = "auto",
) -> None:
    """Load `serve` on loopback: single events, then batches; p50/p99 latency, throughput, targets met or not."""
    if client not in ("auto", "wrk", "python"):
        raise fail(f"--client {client!r}: one of auto, wrk, python")
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    elif client == "wrk" and not shutil.which("wrk"):
        raise fail("--client wrk: wrk is not installed (Debian package wrk: apt-get install wrk)")
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    # the kernel hands connections to worker processes unevenly: two each keeps every worker busy
    batch_connections = batch_connections or 2 * workers
    ok = runner(_run(seconds, connections, batch, batch_connections, soak_minutes, log_level, rate_limit, workers,
                     client))
    if not ok:
        console.print("some targets not met (exit 1)")
        raise typer.Exit(1)
