"""Stateless API workers (issue 10, item 5): processes that share PostgreSQL and Redis share everything that matters.

- Rate limits through Redis: one token bucket per key for every process (api/ratelimit.py), failing open to the
  process's own bucket when Redis goes away.
- A published policy pack (policy/published.py, table published_packs) reaches every process at its next batch,
  without a restart; each decision names the version it was made with and keeps it.
- `serve --workers N`: N processes behind one port, keys made once before they start.

The process tests start real `clearcircle serve` processes on PostgreSQL and Redis (conftest's servers). Cost: two
servers for the rate-limit and publish tests and one `serve --workers 2` per backend, each process spends ~3-6 s
importing; about 40-60 s for the module on the shared machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from api_fixtures import INDUCED_SHARE_TEXT, event, induced_share_post, open_api
from sqlalchemy import func, select

from clearcircle.api.ratelimit import LIMITERS, RedisTokenBucket, TokenBucket, limiter_for, limiter_kind
from clearcircle.config import Settings
from clearcircle.policy.pack import builtin_pack_path, load_pack
from clearcircle.policy.published import PackBook, read_pack, read_pack_files
from clearcircle.service import open_service
from clearcircle.store import tables as t
from clearcircle.store.repository import Store

CLI = [str(Path(sys.executable).parent / "clearcircle")]
HASH_KEY = "stateless-test-key"
BUILTIN_VERSION = load_pack(builtin_pack_path()).version
RULE = "induced-share-text"
_SHADOWED = "    action: {type: limit_reach, days: 7}\n    severity: 3\n\n  - id: induced-share-burst"


def shadowed_pack() -> dict[str, str]:
    """The built-in pack's files with the induced-share rule switched to shadow: the same post is let through."""
    files = read_pack_files(builtin_pack_path())
    text = files["rules/induced_sharing.yaml"]
    assert text.count(_SHADOWED) == 1
    files["rules/induced_sharing.yaml"] = text.replace(_SHADOWED, _SHADOWED.replace("severity: 3\n",
                                                                                    "severity: 3\n    mode: shadow\n"))
    return files


def write_pack(files: dict[str, str], root: Path) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(text.encode())
    return root


def published_rows(store: Store) -> tuple[int, int]:
    """(publications, pack_published audit rows)."""
    with store.reads.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(t.published_packs)).scalar_one()
        audit = conn.execute(select(func.count()).select_from(t.audit)
                             .where(t.audit.c.kind == "pack_published")).scalar_one()
    return rows, audit


# -- published packs, in process ------------------------------------------------------------------------------


def test_publish_stores_files_version_and_audit_once(db_url, tmp_path):
    store = Store(db_url)
    store.upgrade()
    try:
        assert store.published_pack() is None
        pack, files = read_pack(write_pack(shadowed_pack(), tmp_path / "p"))
        assert pack.version != BUILTIN_VERSION
        assert store.publish_pack(pack.name, pack.version, files, "test") == (1, True)
        assert store.publish_pack(pack.name, pack.version, files, "test") == (1, False)  # already in force
        newest = store.published_pack()
        assert (newest["seq"], newest["version"], newest["by"]) == (1, pack.version, "test")
        assert newest["files"] == files
        assert published_rows(store) == (1, 1)
        builtin, builtin_files = read_pack(builtin_pack_path())
        assert store.publish_pack(builtin.name, builtin.version, builtin_files, "test") == (2, True)  # a rollback
        assert store.published_pack()["version"] == BUILTIN_VERSION
        assert store.published_pack(1)["version"] == pack.version
        assert published_rows(store) == (2, 2)
        assert store.verify_audit()[1] == []
    finally:
        store.close()


class CountingSource:
    """A PackSource over a dict, counting how often the files are fetched (a reload)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, str]]] = []
        self.fetched = 0

    def newest(self) -> tuple[int, str] | None:
        return (len(self.rows), self.rows[-1][0]) if self.rows else None

    def files(self, seq: int) -> dict[str, str]:
        self.fetched += 1
        return self.rows[seq - 1][1]


def test_pack_book_reloads_only_when_the_newest_publication_changes(tmp_path, caplog):
    base = load_pack(builtin_pack_path())
    book, source = PackBook(base), CountingSource()
    assert book.refresh(source) is base  # nothing published: the pack given at start
    shadow, shadow_files = read_pack(write_pack(shadowed_pack(), tmp_path / "p"))
    source.rows.append((shadow.version, shadow_files))
    first = book.refresh(source)
    assert first.version == shadow.version and first.rule(RULE).spec.mode == "shadow"
    assert book.refresh(source) is first and source.fetched == 1  # unchanged: no reload
    source.rows.append((BUILTIN_VERSION, read_pack_files(builtin_pack_path())))
    assert book.refresh(source) is base and source.fetched == 1  # a rollback to a loaded version: no reload
    source.rows.append((shadow.version, shadow_files))
    assert book.refresh(source) is first and source.fetched == 1
    broken = {**shadow_files, "rules/induced_sharing.yaml": "rules:\n  - id: x\n    when: nope(\n"}
    source.rows.append(("sha256:broken", broken))
    with caplog.at_level(logging.ERROR, logger="clearcircle.policy.published"):
        assert book.refresh(source) is first  # does not load here: logged, the current pack stays
        assert book.refresh(source) is first and source.fetched == 2  # and not retried every batch
    assert "does not load in this process" in caplog.text


def test_pipeline_decides_with_a_newly_published_pack_and_keeps_old_versions(db_url, tmp_path):
    settings = Settings(db_url=db_url, key_file=tmp_path / "k", hash_key=HASH_KEY)
    one, other = open_service(settings), open_service(settings)  # two processes' worth of services
    try:
        before = one.pipeline.submit([_parsed(induced_share_post("s-1", actor="u-s1"))])[0].decision
        assert before["pack_version"] == BUILTIN_VERSION and RULE in before["rules"]
        pack, files = read_pack(write_pack(shadowed_pack(), tmp_path / "p"))
        one.store.publish_pack(pack.name, pack.version, files, "test")
        after = other.pipeline.submit([_parsed(induced_share_post("s-2", actor="u-s2"))])[0].decision
        assert after["pack_version"] == pack.version
        assert RULE in after["shadow_rules"] and RULE not in after["rules"] and after["verdict"] == "allow"
        assert other.store.decision("s-1")["pack_version"] == BUILTIN_VERSION  # the old decision keeps its version
        assert one.pack.version == pack.version  # reads ask the store too, before any batch
        third = open_service(settings)  # a process started later begins with the published pack
        try:
            assert third.pipeline.pack.version == pack.version
        finally:
            third.close()
    finally:
        one.close()
        other.close()


def _parsed(wire: dict[str, Any]) -> Any:
    from clearcircle.events.schemas import parse_event

    return parse_event(wire)


def invalid_pack() -> dict[str, str]:
    """The shadowed pack with a misspelt signal in the induced-share rule."""
    files = shadowed_pack()
    files["rules/induced_sharing.yaml"] = files["rules/induced_sharing.yaml"].replace(
        'when: any_of(text.categories, ["induced_share"])', 'when: any_of(text.categotries, ["induced_share"])')
    return files


def test_http_publish_refuses_an_invalid_pack_with_its_problems_and_stores_nothing(db_url, tmp_path):
    with open_api(db_url, tmp_path) as api:
        refused = api.client.post("/v1/policy/publish", json={"files": invalid_pack()}, headers=api.h("admin"))
        assert refused.status_code == 422
        problems = refused.json()["problems"]
        assert any(p["file"] == "rules/induced_sharing.yaml" and p["rule"] == RULE and "text.categotries" in
                   p["message"] for p in problems)
        assert "nothing published" in refused.json()["detail"]
        escaping = api.client.post("/v1/policy/publish", json={"files": {"../x.yaml": "a: 1"}}, headers=api.h("admin"))
        assert escaping.status_code == 422
        assert api.client.post("/v1/policy/publish", json={"files": shadowed_pack()},
                               headers=api.h("moderator")).status_code == 403
        assert published_rows(api.svc.store) == (0, 0) and api.svc.store.published_pack() is None
        assert api.client.get("/healthz").json()["pack_version"] == BUILTIN_VERSION
        ok = api.client.post("/v1/policy/publish", json={"files": shadowed_pack()}, headers=api.h("admin"))
        assert ok.status_code == 200 and ok.json()["published"] is True
        assert api.client.get("/healthz").json()["pack_version"] == ok.json()["version"]
        assert api.client.get("/v1/policy", headers=api.h("admin")).json()["version"] == ok.json()["version"]
        same = api.client.post("/v1/policy/publish", json={"files": shadowed_pack()}, headers=api.h("admin"))
        assert same.json()["published"] is False and published_rows(api.svc.store) == (1, 1)


def test_cli_publish_refuses_an_invalid_pack_and_publishes_a_valid_one(sqlite_url, tmp_path):
    def publish(folder: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "policy", "publish", str(folder), "--db", sqlite_url], capture_output=True,
                              text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)

    bad = publish(write_pack(invalid_pack(), tmp_path / "bad"))
    assert bad.returncode == 1, bad.stderr
    assert "rules/induced_sharing.yaml" in bad.stderr and RULE in bad.stderr and "text.categotries" in bad.stderr
    assert "nothing published" in bad.stderr and "Traceback" not in bad.stderr
    good = publish(write_pack(shadowed_pack(), tmp_path / "good"))
    assert good.returncode == 0, good.stderr
    store = Store(sqlite_url)
    try:
        newest = store.published_pack()
        assert newest["by"].startswith("cli") and newest["version"] in good.stdout
        assert published_rows(store) == (1, 1)  # the refused pack left nothing
    finally:
        store.close()


# -- rate limits through Redis, in process --------------------------------------------------------------------


def test_limiter_kinds_come_from_one_registry(redis_url):
    assert set(LIMITERS) == {"memory", "redis"}
    assert limiter_kind(Settings(rate_limit_per_s=0)) is None and limiter_for(Settings(rate_limit_per_s=0)) is None
    assert isinstance(limiter_for(Settings()), TokenBucket)
    shared = limiter_for(Settings(redis_url=redis_url, rate_limit_per_s=2, rate_limit_burst=3))
    assert isinstance(shared, RedisTokenBucket) and (shared.rate, shared.burst) == (2.0, 3.0)
    shared.close()


def test_redis_buckets_are_one_limit_for_every_process(redis_url):
    a, b = RedisTokenBucket(redis_url, rate=0.01, burst=5), RedisTokenBucket(redis_url, rate=0.01, burst=5)
    secret = b"cc_abc_secret-key"
    key = hashlib.blake2b(secret, digest_size=16).digest()
    try:
        waits = [(a if i % 2 else b).take(key) for i in range(8)]
        assert waits[:5] == [0.0] * 5
        assert all(w > 90 for w in waits[5:])  # one token in 100 s at 0.01/s
        assert asyncio.run(b.wait(key)) > 90  # the middleware's path reads the same bucket
        assert a.take(b"another key") == 0.0  # buckets are per key
        with redis.Redis.from_url(redis_url) as client:
            names = [n.decode() for n in client.keys("*")]
            ttl = client.pttl(f"cc:rl:{key.hex()}")
        assert f"cc:rl:{key.hex()}" in names and not any("secret" in n for n in names)  # never the raw key
        assert 0 < ttl <= 501_000  # gone once it would be full again
    finally:
        a.close()
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A private redis-server this test may stop (the session's is shared)."""
    binary = shutil.which("redis-server", path=f"{os.environ.get('PATH', '')}:/usr/bin:/usr/sbin")
    assert binary
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port, socket_connect_timeout=0.5).ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("redis-server did not start")


def test_redis_limiter_fails_open_to_the_process_bucket_and_comes_back(redis_server, tmp_path, caplog):
    port = _free_port()
    server = _own_redis(port, tmp_path)
    limiter = RedisTokenBucket(f"redis://127.0.0.1:{port}/0", rate=0.01, burst=3, retry_s=0.2)
    key = b"k" * 16
    try:
        assert limiter.take(key) == 0.0
        server.terminate()
        server.wait(timeout=10)
        with caplog.at_level(logging.ERROR, logger="clearcircle.api.ratelimit"):
            started = time.monotonic()
            local = [asyncio.run(limiter.wait(key))] + [limiter.take(key) for _ in range(5)]  # the middleware's first
            assert time.monotonic() - started < 5  # short timeouts, no retries: a dead Redis does not stall requests
        assert local[:3] == [0.0] * 3 and all(w > 0 for w in local[3:])  # open, but to this process's own limit
        assert caplog.text.count("unreachable") == 1  # logged once per outage
        server = _own_redis(port, tmp_path)
        time.sleep(0.25)
        assert asyncio.run(limiter.wait(key)) == 0.0 and limiter.take(key) == 0.0  # a fresh Redis: shared again
        with redis.Redis(port=port) as client:
            assert client.exists(f"cc:rl:{key.hex()}")
    finally:
        limiter.close()
        server.terminate()
        server.wait(timeout=10)


# -- processes sharing PostgreSQL and Redis --------------------------------------------------------------------


class Server:
    """`clearcircle serve` as a subprocess on a free loopback port (its own session, so its workers go with it)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([*CLI, "serve", "--port", str(self.port), *args], cwd=cwd, env=env,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_up(self, timeout: float = 180) -> None:  # several processes importing on 2 busy cores
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited at start:\n{self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"serve did not come up:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "CLEARCIRCLE_HASH_KEY": HASH_KEY, "CLEARCIRCLE_KEY_FILE": str(tmp / "unused.key"),
            **extra}


@pytest.fixture(scope="module")
def shared_pair(postgres_server, redis_server, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """Two `serve` processes on one fresh PostgreSQL database and one Redis database, a tiny rate limit (bursts
    of 10, a token every 100 s) and a key per role made beforehand."""
    import psycopg
    from psycopg import sql

    name = f"cc_stateless_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True, connect_timeout=30) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = postgres_server.url(name)
    redis_db = redis_server.rsplit("/", 1)[0] + "/3"  # apart from the counters tests' database 0
    with redis.Redis.from_url(redis_db, socket_timeout=10) as client:
        client.flushdb()
    tmp = tmp_path_factory.mktemp("stateless")
    store = Store(url)
    store.upgrade()
    keys = {n: store.create_key(role, n)[1] for n, role in
            (("limited", "integrator"), ("events", "integrator"), ("admin", "admin"), ("reader", "moderator"))}
    env = _env(tmp, CLEARCIRCLE_REDIS_URL=redis_db, CLEARCIRCLE_RATE_LIMIT_PER_S="0.01",
               CLEARCIRCLE_RATE_LIMIT_BURST="10")
    servers = [Server(["--db", url], env, tmp) for _ in range(2)]
    try:
        for server in servers:
            server.wait_up()
        yield {"a": servers[0], "b": servers[1], "keys": keys, "store": store, "redis": redis_db}
    finally:
        for server in servers:
            server.stop()
        store.close()
        with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True, connect_timeout=30) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.postgres
def test_two_processes_share_one_rate_limit_through_redis(shared_pair):
    a, b, secret = shared_pair["a"], shared_pair["b"], shared_pair["keys"]["limited"]
    answers = [httpx.get(f"{(a if i % 2 else b).base}/v1/signals", headers={"X-API-Key": secret}, timeout=30)
               for i in range(16)]
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == 10  # one burst for the key across both processes (each alone would allow 10)
    assert {i % 2 for i, s in enumerate(statuses) if s == 200} == {0, 1}  # both processes served from it
    refused = [r for r in answers if r.status_code == 429]
    assert len(refused) == 6
    assert all(int(r.headers["retry-after"]) >= 1 and "rate limit" in r.json()["detail"] for r in refused)
    other = httpx.get(f"{a.base}/v1/signals", headers={"X-API-Key": shared_pair["keys"]["reader"]}, timeout=30)
    assert other.status_code == 200  # another key has its own bucket
    with redis.Redis.from_url(shared_pair["redis"]) as client:
        names = [n.decode() for n in client.keys("cc:rl:*")]
    assert f"cc:rl:{hashlib.blake2b(secret.encode(), digest_size=16).hexdigest()}" in names
    assert not any(secret in n for n in names)


@pytest.mark.postgres
def test_a_pack_published_through_one_process_is_used_by_the_other_without_restart(shared_pair):
    a, b, keys = shared_pair["a"], shared_pair["b"], shared_pair["keys"]

    def post(server: Server, ev: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(f"{server.base}/v1/events", json=ev, headers={"X-API-Key": keys["events"]}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    first = post(b, event("post_created", "pub-1", actor="u-p1", text=INDUCED_SHARE_TEXT))
    assert first["pack_version"] == BUILTIN_VERSION and RULE in first["rules"] and first["verdict"] != "allow"
    published = httpx.post(f"{a.base}/v1/policy/publish", json={"files": shadowed_pack()},
                           headers={"X-API-Key": keys["admin"]}, timeout=60)
    assert published.status_code == 200, published.text
    new_version = published.json()["version"]
    assert published.json()["published"] is True and new_version != BUILTIN_VERSION
    second = post(b, event("post_created", "pub-2", actor="u-p2", text=INDUCED_SHARE_TEXT))
    assert second["pack_version"] == new_version  # process B, never restarted
    assert RULE in second["shadow_rules"] and second["verdict"] == "allow"
    again = httpx.get(f"{a.base}/v1/decisions/pub-1", headers={"X-API-Key": keys["reader"]}, timeout=30)
    assert again.json()["pack_version"] == BUILTIN_VERSION  # the earlier decision keeps its version
    assert {httpx.get(f"{s.base}/healthz", timeout=30).json()["pack_version"] for s in (a, b)} == {new_version}
    store: Store = shared_pair["store"]
    assert store.published_pack()["by"] == "api:admin" and published_rows(store) == (1, 1)
    assert store.verify_audit()[1] == []


# -- serve --workers -------------------------------------------------------------------------------------------


@pytest.fixture
def workers_env(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], dict[str, str]]:
    """PostgreSQL runs with Redis (counters and rate limits shared); SQLite is the embedded default, alone."""
    if db_backend == "sqlite":
        return lambda: _env(tmp_path)
    redis_db = request.getfixturevalue("redis_url")
    return lambda: _env(tmp_path, CLEARCIRCLE_REDIS_URL=redis_db)


def test_serve_with_two_workers_answers_from_both_and_decides(make_db_url, workers_env, tmp_path):
    url = make_db_url()
    server = Server(["--db", url, "--workers", "2"], workers_env(), tmp_path)
    try:
        server.wait_up()
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.add(httpx.get(f"{server.base}/healthz", timeout=10).json()["worker"])  # a new connection each
        assert len(seen) == 2, "only one worker answered"
        for pid in seen:  # both are the serve process's own workers
            assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == server.proc.pid
        secret = (tmp_path / "clearcircle-admin.key").read_text().strip()  # made once, before the workers
        store = Store(url)
        try:
            assert [k.name for k in store.list_keys()] == ["bootstrap"]
            _key, events_key = store.create_key("integrator", "workers")
            with httpx.Client(base_url=server.base, headers={"X-API-Key": events_key}, timeout=30) as client:
                answers = [client.post("/v1/events", json=event("like", f"w-{i}", actor=f"u-w{i}"))
                           for i in range(10)]
                answers.append(client.post("/v1/events/batch", json={"events": [
                    event("follow", f"wb-{i}", actor=f"u-w{i}") for i in range(10)]}))
            assert [r.status_code for r in answers] == [200] * 11
            assert store.counts()["decisions"] == 20
            assert store.verify_audit()[1] == []
        finally:
            store.close()
        admin = httpx.get(f"{server.base}/v1/audit/verify", headers={"X-API-Key": secret}, timeout=30)
        assert admin.status_code == 200 and admin.json()["ok"] is True
    finally:
        server.stop()
