"""Secrets and raw identifiers are never stored or logged.

After a `replay` and after API calls to a running `serve` (DEBUG logs, access log on), the whole database,
the SQLite files' bytes and every log line are scanned for each raw phone / device / payment / id-number
value sent, and for the API key secrets used. Keys: created, listed, revoked from the CLI; a revoked key is
refused on the very next request of the running server (no cache outlives a revocation).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import sqlalchemy as sa

from clearcircle.store.repository import Store

CLI = [str(Path(sys.executable).parent / "clearcircle")]
RAW = {"phone": "+86 137-2468-1359", "device_id": "DEV-RawSecret-77xq", "payment_id": "pay_RAW_acct_90817",
       "id_number": "44030119900307231X"}
NEEDLES = [*RAW.values(), "13724681359", "8613724681359", "dev-rawsecret-77xq", "pay_raw_acct_90817",
           "44030119900307231x", "440301199003072"]


def events(prefix: str) -> list[dict]:
    return [
        {"id": f"{prefix}-reg", "type": "account_registered", "occurred_at": "2026-03-02T09:00:00+08:00",
         "actor": f"{prefix}-acct", "body": {"account_type": "personal", **RAW}},
        {"id": f"{prefix}-reg2", "type": "account_registered", "occurred_at": "2026-03-02T09:01:00+08:00",
         "actor": f"{prefix}-acct2", "body": {"account_type": "personal", "phone": RAW["phone"]}},
        {"id": f"{prefix}-post", "type": "post_created", "occurred_at": "2026-03-02T09:02:00+08:00",
         "actor": f"{prefix}-acct", "body": {"surface": "moments", "text": "转发到朋友圈集满30个赞送面膜"}},
    ]


def dump_database(url: str) -> str:
    store = Store(url)
    out = []
    try:
        with store.engine.connect() as conn:
            for table in sa.inspect(conn).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                    out.extend(str(v) for v in row if v is not None)
    finally:
        store.close()
    return "\n".join(out)


def assert_absent(haystack: str, what: str, secrets: list[str] = ()) -> None:  # noqa: B006
    folded = haystack.casefold()
    for needle in [*NEEDLES, *secrets]:
        assert needle.casefold() not in folded, f"{needle!r} found in {what}"


def sqlite_bytes(path: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in path.parent.iterdir() if p.name.startswith(path.name))


def env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "CLEARCIRCLE_KEY_FILE": str(tmp / "hash.key")}


def test_replay_stores_and_prints_no_raw_identifier(tmp_path):
    db = tmp_path / "r.db"
    url = f"sqlite:///{db}"
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events("r")) + b"\n")
    done = subprocess.run([*CLI, "replay", str(path), "--db", url, "--out", str(tmp_path / "d.jsonl")],
                          env=env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "3 events" in done.stdout
    assert_absent(done.stdout + done.stderr, "replay's output")
    assert_absent((tmp_path / "d.jsonl").read_text(), "the decisions file")
    dumped = dump_database(url)
    assert "r-acct" in dumped and "limit_reach" in dumped  # the scan does see what was stored
    assert_absent(dumped, "the database")
    assert_absent(sqlite_bytes(db), "the SQLite files")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_api_logs_and_stores_no_raw_identifier_or_secret_and_revocation_is_immediate(tmp_path):
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    created = subprocess.run([*CLI, "keys", "create", "--role", "integrator", "--name", "backend", "--db", url],
                             env=env(tmp_path), capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    key_id = re.search(r"created key (\w+)", created.stderr).group(1)
    port = _port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([*CLI, "serve", "--port", str(port), "--db", url, "--log-level", "debug",
                               "--access-log"], cwd=tmp_path, env=env(tmp_path), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with httpx.Client(base_url=base, headers={"X-API-Key": secret}, timeout=60) as client:
            one, *rest = events("s")
            assert client.post("/v1/events", json=one).status_code == 200
            assert client.post("/v1/events/batch", json={"events": rest}).status_code == 200
            bad = dict(one, id="s-bad", body={**one["body"], "account_type": "robot"})
            assert client.post("/v1/events", json=bad).status_code == 422  # a refusal logs nothing raw either
            assert client.get("/v1/decisions/s-post").status_code == 200
            listed = subprocess.run([*CLI, "keys", "list", "--db", url], env=env(tmp_path), capture_output=True,
                                    text=True, timeout=120)
            assert key_id in listed.stdout and secret not in listed.stdout
            revoked = subprocess.run([*CLI, "keys", "revoke", key_id, "--db", url], env=env(tmp_path),
                                     capture_output=True, text=True, timeout=120)
            assert revoked.returncode == 0, revoked.stderr
            assert client.get("/v1/decisions/s-post").status_code == 401  # the very next request
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    logs = (tmp_path / "serve.log").read_text(errors="replace")
    json_lines = [orjson.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(line.get("event_id") == "s-reg" for line in json_lines), "the scan does see the API's log lines"
    assert any("/v1/decisions/s-post" in line["msg"] for line in json_lines), "access log lines are there too"
    assert_absent(logs, "the server's logs", [secret])
    assert_absent(dump_database(url), "the database", [secret])
    assert_absent(sqlite_bytes(db), "the SQLite files", [secret])
