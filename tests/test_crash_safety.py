"""Crash safety: SIGKILL `replay` and `serve` at random (seeded) moments, restart, finish, and compare with a clean run.

A decision, its actions, counter hits, cases and audit rows are committed together or not at all
(store.unit), and an id already decided is skipped (the idempotency key of EVENTS.md), so rerunning the
same input after any crash must end in exactly the state of one clean run: every event one decision, no
action applied twice, the audit chain intact, counters and account states (strikes included) equal.

Cost: one clean in-process replay of 100,000 events on SQLite (the reference for both backends: the
outcome of a replay does not depend on the store), then a killed-and-restarted replay on SQLite and on
PostgreSQL, then a server taking batches over HTTP (10,000 events) killed three times. About 25 s per full
pass on a quiet 2-core machine; the whole module 2-4 minutes.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from clearcircle.config import Settings
from clearcircle.events.schemas import parse_event_json
from clearcircle.service import open_service
from clearcircle.store import tables as t
from clearcircle.store.repository import Store
from clearcircle.synthetic import generate

REPLAY_EVENTS = 100_000
SERVER_EVENTS = 10_000
KILLS = 3
HASH_KEY = "crash-safety-test-key"
CLI = [str(Path(sys.executable).parent / "clearcircle")]  # the console script of this venv


@dataclass
class Snapshot:
    """What a run leaves behind, in a form two runs can be compared by."""

    decisions: dict[str, str]  # event id -> sha256 of the stored decision payload
    event_ids: Counter[str]  # events table
    decision_audit: Counter[str]  # audit rows of kind decision, by event id
    state_changes: Counter[bytes]  # audit state_change payloads (event id, account, action, rule, ...)
    accounts: dict[str, str]  # account id -> stored state document
    hits: Counter[tuple[str, str, int, str, str]]
    cases: Counter[tuple[str, str, str, str]]


def snapshot(url: str) -> Snapshot:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            decisions = {r.event_id: hashlib.sha256(r.payload.encode()).hexdigest()
                         for r in conn.execute(select(t.decisions.c.event_id, t.decisions.c.payload))}
            event_ids = Counter(conn.execute(select(t.events.c.id)).scalars())
            decision_audit: Counter[str] = Counter()
            changes: Counter[bytes] = Counter()
            for kind, subject, payload in conn.execute(select(t.audit.c.kind, t.audit.c.subject, t.audit.c.payload)):
                if kind == "decision":
                    decision_audit[subject] += 1
                elif kind == "state_change":
                    changes[payload.encode()] += 1
            accounts = dict(conn.execute(select(t.accounts.c.id, t.accounts.c.state)).all())
            hits = Counter(tuple(r) for r in conn.execute(select(
                t.counter_hits.c.key, t.counter_hits.c.name, t.counter_hits.c.at_ms, t.counter_hits.c.event_id,
                t.counter_hits.c.member)))
            cases = Counter(tuple(r) for r in conn.execute(select(
                t.cases.c.account, t.cases.c.event_id, t.cases.c.rules, t.cases.c.status)))
    finally:
        store.close()
    return Snapshot(decisions, event_ids, decision_audit, changes, accounts, hits, cases)


def decided(url: str, store: Store | None = None) -> int:
    own = store is None
    store = store or Store(url)
    try:
        with store.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(t.decisions)).scalar_one()
    finally:
        if own:
            store.close()


def assert_same_as_clean(got: Snapshot, clean: Snapshot, ids: list[str]) -> None:
    assert len(got.decisions) == len(ids) and set(got.decisions) == set(ids), "every event has one decision"
    assert got.event_ids == Counter(ids), "every event stored exactly once"
    assert got.decision_audit == Counter(ids), "one decision audit row per event"
    twice = [p for p, n in got.state_changes.items() if n > 1]
    assert not twice, f"state changes applied more than once: {twice[:3]}"
    assert got.state_changes == clean.state_changes, "the same actions as a clean run (none lost, none extra)"
    assert got.decisions == clean.decisions, "the same decisions as a clean run"
    assert got.hits == clean.hits, "counter hits equal a clean run's"
    assert got.cases == clean.cases, "review cases equal a clean run's"
    diff = [a for a in clean.accounts if got.accounts.get(a) != clean.accounts[a]]
    assert set(got.accounts) == set(clean.accounts) and not diff, f"account states differ: {diff[:5]}"


def audit_verify_cli(url: str) -> None:
    proc = subprocess.run([*CLI, "audit", "verify", "--db", url], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "audit chain intact" in proc.stdout


def write_events(path: Path, n: int, seed: int) -> list[str]:
    ids = []
    with path.open("wb") as fh:
        for e in generate(n, seed=seed):
            fh.write(orjson.dumps(e) + b"\n")
            ids.append(e["id"])
    return ids


def clean_run(path: Path, url: str, tmp: Path) -> Snapshot:
    """The reference: one uninterrupted replay in this process, through the same Pipeline.submit."""
    svc = open_service(Settings(db_url=url, hash_key=HASH_KEY, key_file=tmp / "unused.key"))
    try:
        batch: list[Any] = []
        with path.open("rb") as fh:
            for line in fh:
                batch.append(parse_event_json(line))
                if len(batch) == 1000:
                    svc.pipeline.submit(batch)
                    batch = []
        if batch:
            svc.pipeline.submit(batch)
    finally:
        svc.close()
    return snapshot(url)


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "CLEARCIRCLE_HASH_KEY": HASH_KEY, "CLEARCIRCLE_KEY_FILE": str(tmp / "unused.key"),
            "CLEARCIRCLE_RATE_LIMIT_PER_S": "0"}


@pytest.fixture(scope="module")
def replay_input(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Snapshot]:
    tmp = tmp_path_factory.mktemp("crash-replay")
    path = tmp / "events.jsonl"
    ids = write_events(path, REPLAY_EVENTS, seed=7)
    return path, ids, clean_run(path, f"sqlite:///{tmp / 'clean.db'}", tmp)


def test_replay_killed_and_restarted_ends_like_a_clean_run(replay_input, make_db_url, tmp_path, db_backend):
    path, ids, clean = replay_input
    url = make_db_url()
    rng = random.Random(f"replay-{db_backend}")
    targets = sorted(rng.sample(range(5_000, len(ids) - 5_000, 1000), KILLS))
    probe = Store(url)
    killed_at = []
    try:
        for target in targets:
            proc = subprocess.Popen([*CLI, "replay", str(path), "--db", url], env=_env(tmp_path),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                while proc.poll() is None and _safe_count(url, probe) < target:
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, 0.5))  # land anywhere inside the next batch's transaction
                assert proc.poll() is None, f"replay ended before the kill: {proc.stderr.read().decode()[-2000:]}"
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.wait(timeout=60)
                proc.stderr.close()
            killed_at.append(_safe_count(url, probe))
        assert killed_at == sorted(killed_at) and killed_at[-1] < len(ids), killed_at
        done = subprocess.run([*CLI, "replay", str(path), "--db", url], env=_env(tmp_path), capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        skipped = re.search(r"(\d+)\s+already\s+decided", done.stdout)
        assert skipped and int(skipped.group(1)) == killed_at[-1], done.stdout[:500]
    finally:
        probe.close()
    assert_same_as_clean(snapshot(url), clean, ids)
    audit_verify_cli(url)


def _safe_count(url: str, probe: Store) -> int:
    try:
        return decided(url, probe)
    except Exception:  # the schema may not exist yet while the first run migrates
        return 0


# -- the server under load -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`clearcircle serve` as a subprocess on a free loopback port."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url, self.tmp = url, tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""

    def start(self) -> None:
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--db", self.url], cwd=self.tmp,
                                     env=_env(self.tmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "serve exited at start"
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("serve did not come up in 120 s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def _batches(ids_and_lines: list[bytes], size: int) -> Iterator[bytes]:
    for i in range(0, len(ids_and_lines), size):
        yield b'{"events":[' + b",".join(ids_and_lines[i : i + size]) + b"]}"


@pytest.fixture(scope="module")
def server_input(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], list[str], Snapshot]:
    tmp = tmp_path_factory.mktemp("crash-server")
    path = tmp / "events.jsonl"
    ids = write_events(path, SERVER_EVENTS, seed=11)
    lines = path.read_bytes().splitlines()
    return lines, ids, clean_run(path, f"sqlite:///{tmp / 'clean.db'}", tmp)


def test_server_killed_under_load_ends_like_a_clean_run(server_input, make_db_url, tmp_path, db_backend):
    """Batches are sent in order as fast as the server takes them; the server is SIGKILLed while a batch is in
    flight, restarted, and the unanswered batch sent again (the platform's retry). The end state is a clean run's."""
    lines, ids, clean = server_input
    url = make_db_url()
    store = Store(url)
    store.upgrade()
    _info, secret = store.create_key("integrator", "crash-test")
    store.close()
    batches = list(_batches(lines, 250))
    rng = random.Random(f"server-{db_backend}")
    kill_at = set(rng.sample(range(1, len(batches) - 1), KILLS))
    server = Server(url, tmp_path)
    server.start()
    retried = 0
    try:
        with httpx.Client(headers={"X-API-Key": secret, "content-type": "application/json"}, timeout=120) as client:
            for i, body in enumerate(batches):
                if i in kill_at:  # kill while this batch is being decided
                    timer = threading.Timer(rng.uniform(0.0, 0.3), server.kill)
                    timer.start()
                    try:
                        client.post(f"{server.base}/v1/events/batch", content=body)
                    except httpx.TransportError:
                        pass
                    timer.join()
                    server.start()
                    retried += 1
                response = client.post(f"{server.base}/v1/events/batch", content=body)
                assert response.status_code == 200, response.text[:500]
                assert len(response.json()["decisions"]) == body.count(b'"occurred_at"')
    finally:
        server.stop()
    assert retried == KILLS
    assert_same_as_clean(snapshot(url), clean, ids)
    audit_verify_cli(url)
