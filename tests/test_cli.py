"""The `clearcircle` command line: replay, db upgrade, audit verify, keys, bench; failures are messages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from clearcircle.cli.main import app
from clearcircle.store.repository import Store

REPLAY_KEYS = {"event_id", "verdict", "rules", "shadow_rules", "signals", "evidence", "pack_version"}  # EVENTS.md
CLI = Path(sys.executable).parent / "clearcircle"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Run every command in a scratch folder with a fixed identifier key and no ambient configuration."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLEARCIRCLE_HASH_KEY", "a-key-for-the-cli-tests")
    for name in ("CLEARCIRCLE_DB_URL", "CLEARCIRCLE_PACK", "CLEARCIRCLE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


def no_traceback(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def wire(i: int, type_: str, actor: str, minute: int, **body: Any) -> dict[str, Any]:
    return {"id": f"cli-{i}", "type": type_, "occurred_at": f"2026-03-02T10:{minute:02d}:00+08:00",
            "actor": actor, "body": body}


def sample_events() -> list[dict[str, Any]]:
    return [
        wire(1, "account_registered", "cli-a", 0, account_type="personal", device_id="phone-model-x"),
        wire(2, "post_created", "cli-a", 1, surface="moments", text="今天的晚霞真好看"),
        wire(3, "post_created", "cli-b", 2, surface="moments", text="莆田鞋，支持验货，微信下单"),
        wire(4, "post_created", "cli-c", 3, surface="article", text="躺赚项目，拉人头，直推奖百分之十"),
        wire(5, "friend_request", "cli-a", 4, target="cli-b", message="我们是同事"),
        wire(6, "share", "cli-a", 5, item="https://example.com/a", destination="chat"),
        wire(7, "moderator_action", "mod-1", 6, target="cli-b", action="restrict", reason="fake goods",
             duration_days=2, feature="post"),
        wire(8, "post_created", "cli-b", 7, surface="moments", text="新到一批货"),
    ]


def write_jsonl(path: Path, events: list[dict[str, Any]], raw_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(e, ensure_ascii=False) for e in events]
    for index, raw in (raw_lines or {}).items():
        lines.insert(index, raw)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def table_counts(output: str, names: list[str]) -> dict[str, int]:
    """verdict -> count as printed in the summary table."""
    found = {}
    for name in names:
        m = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])[^\w\n]+(\d+)", output)
        if m:
            found[name] = int(m.group(1))
    return found


def count_rows(url: str, sql: str) -> int:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar_one()
    finally:
        engine.dispose()


# --- replay ---------------------------------------------------------------------------------------------


def test_replay_writes_one_line_per_event_in_order(db_url, tmp_path):
    events = sample_events()
    src = write_jsonl(tmp_path / "events.jsonl", events)
    out = tmp_path / "decisions.jsonl"
    result = run("replay", src, "--out", out, "--db", db_url)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [d["event_id"] for d in lines] == [e["id"] for e in events]
    for d in lines:
        assert set(d) == REPLAY_KEYS
    verdicts = {d["event_id"]: d["verdict"] for d in lines}
    assert verdicts["cli-2"] == "allow"
    assert verdicts["cli-3"] == "remove" and "counterfeit-sale-text" in lines[2]["rules"]
    assert verdicts["cli-4"] == "review"
    assert verdicts["cli-7"] == "restrict"
    assert verdicts["cli-8"] == "remove" and "restricted-feature-use" in lines[7]["rules"]
    # the summary table counts the verdicts of the file
    expected = Counter(d["verdict"] for d in lines)
    assert table_counts(result.stdout, list(expected)) == dict(expected)
    assert "0 already decided" in flat(result.output)
    # everything is stored, and the audit chain over it verifies
    assert count_rows(db_url, "select count(*) from events") == len(events)
    assert count_rows(db_url, "select count(*) from cases") == 1
    verify = run("audit", "verify", "--db", db_url)
    assert verify.exit_code == 0, verify.output


def test_replay_again_reports_all_as_already_decided(db_url, tmp_path):
    events = sample_events()
    src = write_jsonl(tmp_path / "events.jsonl", events)
    first = run("replay", src, "--out", tmp_path / "one.jsonl", "--db", db_url)
    assert first.exit_code == 0, first.output
    audit_rows = count_rows(db_url, "select count(*) from audit where kind = 'state_change'")
    assert audit_rows > 0  # the sample does change state (a restriction, a strike, a case)
    second = run("replay", src, "--out", tmp_path / "two.jsonl", "--db", db_url)
    assert second.exit_code == 0, second.output
    assert f"{len(events)} already decided" in flat(second.output)
    one = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text(encoding="utf-8").splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text(encoding="utf-8").splitlines()]
    assert one == two
    assert count_rows(db_url, "select count(*) from audit where kind = 'state_change'") == audit_rows
    assert count_rows(db_url, "select count(*) from events") == len(events)
    assert count_rows(db_url, "select count(*) from cases") == 1


def test_replay_again_gives_byte_identical_lines(db_url, tmp_path):
    """A backtest diffs decision files: a replay of the same file must write the same bytes."""
    src = write_jsonl(tmp_path / "events.jsonl", sample_events())
    assert run("replay", src, "--out", tmp_path / "one.jsonl", "--db", db_url).exit_code == 0
    assert run("replay", src, "--out", tmp_path / "two.jsonl", "--db", db_url).exit_code == 0
    one = (tmp_path / "one.jsonl").read_text(encoding="utf-8").splitlines()
    two = (tmp_path / "two.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(one) == len(two) == len(sample_events())
    for a, b in zip(one, two, strict=True):
        assert a == b


BAD_LINE_3 = json.dumps(wire(99, "post_created", "cli-z", 9, surface="billboard", text="看这里"), ensure_ascii=False)


def test_replay_refuses_a_file_with_an_invalid_line(db_url, tmp_path):
    assert run("db", "upgrade", "--db", db_url).exit_code == 0
    src = write_jsonl(tmp_path / "events.jsonl", sample_events(), {2: BAD_LINE_3})
    result = run("replay", src, "--out", tmp_path / "out.jsonl", "--db", db_url)
    assert result.exit_code == 2, result.output
    no_traceback(result)
    message = flat(result.output)
    assert f"{src.name}:3:" in message
    assert "body.surface" in message
    assert count_rows(db_url, "select count(*) from events") == 0
    assert count_rows(db_url, "select count(*) from decisions") == 0


def test_replay_refuses_bad_json_naming_the_line(sqlite_url, tmp_path):
    src = write_jsonl(tmp_path / "events.jsonl", sample_events(), {2: '{"id": "x", "type": '})
    result = run("replay", src, "--db", sqlite_url)
    assert result.exit_code == 2
    no_traceback(result)
    assert f"{src.name}:3:" in flat(result.output)


def test_replay_skip_invalid_stores_the_rest(db_url, tmp_path):
    events = sample_events()
    src = write_jsonl(tmp_path / "events.jsonl", events, {2: BAD_LINE_3})
    out = tmp_path / "out.jsonl"
    result = run("replay", src, "--out", out, "--db", db_url, "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert f"{src.name}:3:" in flat(result.output)  # says what it skipped
    assert [json.loads(x)["event_id"] for x in out.read_text(encoding="utf-8").splitlines()] == \
        [e["id"] for e in events]
    assert count_rows(db_url, "select count(*) from events") == len(events)


def test_replay_missing_file(sqlite_url, tmp_path):
    result = run("replay", tmp_path / "no-such-file.jsonl", "--db", sqlite_url)
    assert result.exit_code == 2
    no_traceback(result)
    assert "no-such-file.jsonl" in flat(result.output)


def test_replay_missing_file_real_process(tmp_path):
    proc = subprocess.run([str(CLI), "replay", str(tmp_path / "absent.jsonl")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "absent.jsonl" in flat(proc.stderr)


# --- db, audit, keys ------------------------------------------------------------------------------------


def test_db_upgrade_then_audit_verify(db_url):
    up = run("db", "upgrade", "--db", db_url)
    assert up.exit_code == 0, up.output
    again = run("db", "upgrade", "--db", db_url)  # idempotent
    assert again.exit_code == 0, again.output
    verify = run("audit", "verify", "--db", db_url)
    assert verify.exit_code == 0, verify.output
    assert "intact" in verify.output


def test_audit_verify_finds_an_edited_decision(sqlite_url, tmp_path):
    src = write_jsonl(tmp_path / "events.jsonl", sample_events())
    assert run("replay", src, "--db", sqlite_url).exit_code == 0
    assert run("audit", "verify", "--db", sqlite_url).exit_code == 0
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:  # someone softens a stored decision after the fact
        conn.execute(sa.text("update decisions set payload = replace(payload, '\"remove\"', '\"allow\"'), "
                             "verdict = 'allow' where event_id = 'cli-3'"))
    engine.dispose()
    result = run("audit", "verify", "--db", sqlite_url)
    assert result.exit_code == 1
    no_traceback(result)
    assert "cli-3" in result.output


def test_keys_create_list_revoke(db_url):
    created = run("keys", "create", "--role", "integrator", "--name", "backend-x", "--db", db_url)
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert len(secret) >= 24
    store = Store(db_url)
    try:
        assert store.key_role(secret) == "integrator"
    finally:
        store.close()
    key_id = re.search(r"created key (\w+)", created.stderr).group(1)
    listed = run("keys", "list", "--db", db_url)
    assert listed.exit_code == 0, listed.output
    assert key_id in listed.output and "backend-x" in listed.output and "integrator" in listed.output
    assert secret not in listed.output
    row = next(line for line in listed.output.splitlines() if key_id in line)
    assert not re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}.*\d{4}-\d{2}-\d{2} \d{2}:\d{2}", row)  # not revoked
    revoked = run("keys", "revoke", key_id, "--db", db_url)
    assert revoked.exit_code == 0, revoked.output
    row = next(line for line in run("keys", "list", "--db", db_url).output.splitlines() if key_id in line)
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}.*\d{4}-\d{2}-\d{2} \d{2}:\d{2}", row)  # created, revoked
    store = Store(db_url)
    try:
        [key] = [k for k in store.list_keys() if k.id == key_id]
        assert key.revoked_ms is not None and key.role == "integrator"
        assert store.key_role(secret) is None  # a revoked key stops working
    finally:
        store.close()
    twice = run("keys", "revoke", key_id, "--db", db_url)
    assert twice.exit_code == 1
    no_traceback(twice)


def test_keys_create_unknown_role(sqlite_url):
    result = run("keys", "create", "--role", "wizard", "--name", "x", "--db", sqlite_url)
    assert result.exit_code == 2
    no_traceback(result)
    assert "wizard" in result.output
    listed = run("keys", "list", "--db", sqlite_url)
    assert "wizard" not in listed.output


@pytest.mark.parametrize("command", [
    ["replay", "EVENTS"],
    ["decide", '{"id": "e1", "type": "like", "occurred_at": "2026-03-02T10:00:00+08:00", "actor": "a", '
               '"body": {"item": "p1"}}'],
    ["db", "upgrade"],
    ["audit", "verify"],
    ["keys", "list"],
    ["keys", "create", "--role", "admin", "--name", "x"],
    ["bench", "--events", "1000"],
], ids=lambda c: " ".join(c[:2]) if c[0] in ("db", "audit", "keys") else c[0])
def test_bad_db_url_is_a_message_not_a_traceback(tmp_path, command):
    args = [str(write_jsonl(tmp_path / "e.jsonl", sample_events())) if a == "EVENTS" else a for a in command]
    result = run(*args, "--db", "nosuch://x")
    no_traceback(result)
    assert result.exit_code == 2
    assert "nosuch" in result.output


def test_bench_prints_events_per_second():
    result = run("bench", "--events", "2000")
    assert result.exit_code == 0, result.output
    assert "events/s" in result.output
    assert re.search(r"end to end: [\d,]+ events/s", result.output)


def test_quotas_command_shows_the_push_quota(sqlite_url, tmp_path):
    events = [
        {"id": "q-reg", "type": "account_registered", "occurred_at": "2026-03-01T08:00:00+08:00",
         "actor": "svc-acct", "body": {"account_type": "service"}},
        {"id": "q-p1", "type": "message_push", "occurred_at": "2026-03-02T08:00:00+08:00",
         "actor": "svc-acct", "body": {"audience": 10}},
    ]
    assert run("replay", write_jsonl(tmp_path / "q.jsonl", events), "--db", sqlite_url).exit_code == 0
    result = run("quotas", "svc-acct", "--at", "2026-03-20T12:00:00+08:00", "--db", sqlite_url)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "pushes" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["pushes", "2026-03", "4", "1", "3"]
    assert run("quotas", "nobody", "--db", sqlite_url).exit_code == 1
    bad = run("quotas", "svc-acct", "--at", "yesterday", "--db", sqlite_url)
    assert bad.exit_code == 2 and "RFC 3339" in bad.output


@pytest.mark.parametrize(("variable", "value", "command"), [
    ("CLEARCIRCLE_COALESCE_LINGER_MS", "-1", ["db", "upgrade"]),
    ("CLEARCIRCLE_RATE_LIMIT_PER_S", "fast", ["serve", "--port", "1"]),
    ("CLEARCIRCLE_MAX_BATCH", "many", ["audit", "verify"]),
])
def test_a_bad_setting_in_the_environment_is_a_message_naming_it(variable, value, command, monkeypatch, sqlite_url):
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("CLEARCIRCLE_DB_URL", sqlite_url)
    result = run(*command)
    no_traceback(result)
    assert result.exit_code == 2
    assert f"{variable}='{value}'" in flat(result.output)
