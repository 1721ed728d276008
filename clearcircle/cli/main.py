"""`clearcircle` commands: serve, replay, policy check, audit verify, db upgrade, keys, bench.

Every failure is a message and an exit code (1: a check failed; 2: bad input or usage), never a traceback.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from clearcircle.cli.common import (
    DbOpt,
    PackOpt,
    console,
    err,
    fail,
    open_service_or_fail,
    say,
    service_for,
    settings_for,
)
from clearcircle.events.schemas import Event, EventError, parse_event_json
from clearcircle.policy.decision import replay_line
from clearcircle.policy.pack import PackError, builtin_pack_path, load_pack
from clearcircle.signals.quota import quota_report
from clearcircle.store.db import StoreError
from clearcircle.store.repository import ROLES, Store, StoredCounters

app = typer.Typer(help="ClearCircle: a governance engine against malicious marketing.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
policy_app = typer.Typer(help="Policy packs.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
# Sub-apps and commands that live in their own modules register here (one import and one line each).
from clearcircle.cli.merchants import merchants_app  # noqa: E402, I001
app.add_typer(merchants_app, name="merchants")
from clearcircle.cli.campaigns import campaigns_app  # noqa: E402, I001
app.add_typer(campaigns_app, name="campaigns")
from clearcircle.cli.text_bench import bench_text  # noqa: E402, I001
app.command("bench-text")(bench_text)
from clearcircle.cli.model import register as register_model_commands  # noqa: E402, I001
register_model_commands(app)
from clearcircle.cli.detect import register as register_detect_commands  # noqa: E402, I001
register_detect_commands(app)  # issue 9: detect, evaluate-graph, bench-graph
from clearcircle.cli.review import register as register_review_commands  # noqa: E402, I001
register_review_commands(app)  # issue 6: queue, appeals, backtest, rules-stats, report
from clearcircle.cli.load_bench import bench_load  # noqa: E402, I001
app.command("bench-load")(bench_load)
from clearcircle.cli.stream import register as register_stream_commands  # noqa: E402, I001
register_stream_commands(app)  # issue 10: publish, worker (docs/stream.md)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, db: DbOpt = None, pack: PackOpt = None,
          log_level: Annotated[str, typer.Option(help="JSON log lines at this level and above (stderr)")] = "info",
          access_log: Annotated[bool, typer.Option(help="one log line per HTTP request")] = False,
          workers: Annotated[int, typer.Option(
              min=1, help="worker processes sharing the port, each with its own store connections; they share "
                          "rate limits and counters through Redis (CLEARCIRCLE_REDIS_URL) and the published "
                          "policy pack through the store. PostgreSQL is the production store for many workers; "
                          "SQLite works (WAL) but lets one worker write at a time")] = 1,
          stream: Annotated[str | None, typer.Option(
              "--stream", help="redis://HOST:PORT/NAME: the event stream that POST /v1/events?async=true publishes "
                               "to for `clearcircle worker` to decide (default CLEARCIRCLE_STREAM_URL; none: "
                               "async=true is refused)")] = None) -> None:
    """Run the HTTP API (migrates the store; creates an admin key on first start)."""
    import uvicorn

    from clearcircle.api.app import create_app
    from clearcircle.obs.logs import configure as configure_logging
    from clearcircle.signals.warmup import warm_up

    stream = stream or os.environ.get("CLEARCIRCLE_STREAM_URL")
    if stream:  # a bad URL is a message now, not a failure on the first async request
        from clearcircle.stream.base import StreamError
        from clearcircle.stream.redis_streams import StreamAddress

        try:
            StreamAddress.parse(stream)
        except StreamError as exc:
            raise fail(str(exc)) from None
        os.environ["CLEARCIRCLE_STREAM_URL"] = stream  # read by the settings, here and in every worker
    settings = settings_for(db, pack)  # a bad CLEARCIRCLE_* value: a message, before logging is set up
    configure_logging(log_level)  # JSON lines with the event id (clearcircle/obs/logs.py)

    service = open_service_or_fail(settings)
    if not service.store.list_keys():
        key, secret = service.store.create_key("admin", "bootstrap")
        path = Path("clearcircle-admin.key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
        console.print(f"first start: admin key {key.id} written to {path.resolve()} (create others with "
                      "`clearcircle keys create`)")
    say(("pack", "bold"), f"{service.pack.name} {service.pack.version[:19]}…, store {service.store.engine.url!r}",
         console)
    # uvloop + httptools: the fast event loop and HTTP parser (docs/hardening.md, load figures)
    options = {"host": host, "port": port, "log_level": log_level, "log_config": None, "access_log": access_log,
               "loop": "uvloop", "http": "httptools"}
    if workers == 1:
        warm_up()  # the model and OCR engine now, not on the first requests
        uvicorn.run(create_app(service), **options)
        return
    # Many workers: migrated, keys and key files made above, once; each worker opens its own Service from the
    # environment (uvicorn starts them as fresh processes and calls worker_app in each).
    settings = service.settings
    service.close()
    os.environ["CLEARCIRCLE_DB_URL"] = settings.db_url
    if settings.pack is not None:
        os.environ["CLEARCIRCLE_PACK"] = str(Path(settings.pack).resolve())
    os.environ[_WORKER_LOG_LEVEL] = log_level
    # a worker answers the supervisor's health pings only once it has imported the engine (seconds on a busy
    # machine); uvicorn's default of 5 s would kill and restart workers that are merely starting
    uvicorn.run("clearcircle.cli.main:worker_app", factory=True, workers=workers, timeout_worker_healthcheck=60,
                **options)


_WORKER_LOG_LEVEL = "CLEARCIRCLE_SERVE_LOG_LEVEL"


def worker_app():  # noqa: ANN201 - a FastAPI app; not imported here, to keep the CLI's start light
    """The app of one `serve --workers N` process: its own store connections and pipeline, from the settings in
    the environment `serve` set (the schema is already migrated, so it is only checked)."""
    from clearcircle.api.app import create_app
    from clearcircle.config import Settings
    from clearcircle.obs.logs import configure as configure_logging
    from clearcircle.service import open_service
    from clearcircle.signals.warmup import warm_up

    configure_logging(os.environ.get(_WORKER_LOG_LEVEL, "info"))
    service = open_service(Settings(), migrate=False)
    warm_up()
    return create_app(service)


def _open(path: Path):  # noqa: ANN202
    try:
        return path.open("rb")
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from None


def _scan_events(path: Path, skip_invalid: bool) -> tuple[int, set[int]]:
    """First pass: validate every line without storing anything. Returns (valid events, bad line numbers).

    Replay reads the file twice rather than holding it in memory, so a month of events replays in flat memory.
    """
    valid, bad, problems = 0, set(), []
    with _open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                parse_event_json(line)
                valid += 1
            except EventError as exc:
                bad.add(lineno)
                problems.append(f"{path}:{lineno}: {exc}")
    if problems and not skip_invalid:
        shown = "\n".join(problems[:20]) + (f"\n… and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise fail(f"{len(problems)} invalid event(s), nothing stored:\n{shown}")
    for line in problems:
        say(("skipped", "yellow"), line)
    return valid, bad


def _read_batches(path: Path, bad: set[int], size: int) -> Iterator[list[Event]]:
    """Second pass: the valid events in file order, `size` at a time."""
    batch: list[Event] = []
    with _open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if lineno in bad or not line.strip():
                continue
            batch.append(parse_event_json(line))
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


@app.command()
def replay(
    events_file: Annotated[Path, typer.Argument(metavar="EVENTS.jsonl", help="one event per line")],
    out: Annotated[Path | None, typer.Option("--out", help="write one decision line per event here")] = None,
    db: DbOpt = None,
    pack: PackOpt = None,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="events per transaction")] = 1000,
    skip_invalid: Annotated[bool, typer.Option(help="skip invalid lines instead of refusing the file")] = False,
) -> None:
    """Decide every event of a JSONL file in order; the file is refused whole if any line is invalid."""
    total, bad = _scan_events(events_file, skip_invalid)
    service = service_for(db, pack)
    verdicts: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    shadow: Counter[str] = Counter()
    duplicates = 0
    started = time.perf_counter()
    sink = out.open("wb") if out else None
    try:
        with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err, disable=not err.is_terminal) as progress:
            task = progress.add_task("replay", total=total)
            for chunk in _read_batches(events_file, bad, batch):
                for outcome in service.pipeline.submit(chunk):
                    d = outcome.decision
                    duplicates += outcome.duplicate
                    verdicts[d["verdict"]] += 1
                    rules.update(d["rules"])
                    shadow.update(d["shadow_rules"])
                    if sink:
                        sink.write(orjson.dumps(replay_line(d)) + b"\n")
                progress.advance(task, len(chunk))
    finally:
        if sink:
            sink.close()
        service.close()
    seconds = time.perf_counter() - started
    table = Table(title=f"{total} events in {seconds:.1f}s ({total / max(seconds, 1e-9):,.0f}/s), "
                        f"{duplicates} already decided")
    table.add_column("verdict / rule")
    table.add_column("count", justify="right")
    for name, count in sorted(verdicts.items(), key=lambda kv: -kv[1]):
        table.add_row(f"[bold]{name}[/bold]", str(count))
    for name, count in rules.most_common():
        table.add_row(f"  rule {name}", str(count))
    for name, count in shadow.most_common():
        table.add_row(f"  shadow {name}", str(count))
    console.print(table)


@app.command()
def decide(event_json: Annotated[str, typer.Argument(help="one event as JSON, or - for stdin")],
           db: DbOpt = None, pack: PackOpt = None) -> None:
    """Decide one event and print its decision."""
    raw = sys.stdin.read() if event_json == "-" else event_json
    try:
        event = parse_event_json(raw)
    except EventError as exc:
        raise fail(f"invalid event: {exc}") from None
    service = service_for(db, pack)
    try:
        outcome = service.pipeline.submit([event])[0]
    finally:
        service.close()
    sys.stdout.write(orjson.dumps(outcome.decision, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command()
def quotas(account: str, at: Annotated[str | None, typer.Option(help="RFC 3339 time (default now)")] = None,
           db: DbOpt = None, pack: PackOpt = None) -> None:
    """An account's quotas: limit, used and left (friends, friend requests a day, pushes a day or month)."""
    try:
        when = datetime.fromisoformat(at) if at else datetime.now(UTC)
    except ValueError:
        raise fail(f"--at {at!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise fail("--at needs a time-zone offset")
    service = service_for(db, pack)
    try:
        state = service.store.account_state(account)
        if state is None:
            raise fail(f"unknown account {account!r}", 1)
        report = quota_report(state.view(int(when.timestamp() * 1000)), service.pack.settings,
                              StoredCounters(service.store))
    finally:
        service.close()
    table = Table(title=f"{account} ({report['class']}), {report['timezone']}")
    for col in ("quota", "period", "limit", "used", "left"):
        table.add_column(col)
    for name in ("friends", "friend_requests", "pushes"):
        if (q := report.get(name)) is not None:
            table.add_row(name, str(q.get("period", "")), str(q["limit"]), str(q["used"]), str(q["left"]))
    console.print(table)


@policy_app.command("check")
def policy_check(pack: Annotated[Path | None, typer.Argument(help="pack folder (default: built-in)")] = None) -> None:
    """Validate a policy pack; every problem with file, line and rule. Exit 1 if invalid."""
    path = pack or builtin_pack_path()
    try:
        loaded = load_pack(path)
    except PackError as exc:
        for problem in exc.problems:
            say(("✗", "red"), str(problem))
        raise typer.Exit(1) from None
    table = Table(title=f"{loaded.name} {loaded.version}")
    for col in ("rule", "norm", "events", "action", "mode"):
        table.add_column(col)
    for rule in loaded.rules:
        table.add_row(rule.id, rule.spec.norm.spec, ", ".join(rule.spec.events), rule.action.type, rule.spec.mode)
    console.print(table)
    console.print(f"[green]✓[/green] {len(loaded.rules)} rules valid")


@policy_app.command("publish")
def policy_publish(pack: Annotated[Path, typer.Argument(help="pack folder")], db: DbOpt = None) -> None:
    """Validate a pack exactly as `policy check` does and publish it through the store: every process on this
    database (every `serve` worker) decides with it from its next batch, without a restart. Exit 1 if invalid
    (every problem listed, nothing stored). Publishing an earlier version again rolls back to it."""
    from clearcircle.cli.common import actor, open_store
    from clearcircle.policy.published import read_pack

    try:
        loaded, files = read_pack(pack)
    except PackError as exc:
        for problem in exc.problems:
            say(("✗", "red"), str(problem))
        say(("error:", "red"), "invalid policy pack, nothing published")
        raise typer.Exit(1) from None
    except OSError as exc:
        raise fail(f"cannot read {pack}: {exc.strerror or exc}") from None
    store = open_store(db)
    try:
        seq, published = store.publish_pack(loaded.name, loaded.version, files, actor())
    finally:
        store.close()
    if published:
        say(("✓", "green"), f"published {loaded.name} {loaded.version} ({len(loaded.rules)} rules, publication "
            f"#{seq}): in force from each worker's next batch", console)
    else:
        say(("unchanged", "yellow"), f"{loaded.version} is already the published pack (publication #{seq})",
            console)


@audit_app.command("verify")
def audit_verify(db: DbOpt = None) -> None:
    """Check the audit hash chain; names every edited, deleted or reordered row. Exit 1 if broken."""
    try:
        store = Store(settings_for(db).db_url)
    except StoreError as exc:
        raise fail(str(exc)) from None
    try:
        checked, findings = store.verify_audit()
    except Exception as exc:  # a missing table or unreachable server is a usage error, not a broken chain
        raise fail(f"cannot read the audit log: {exc.__class__.__name__}: {exc}") from None
    finally:
        store.close()
    for finding in findings:
        say(("✗", "red"), str(finding))
    if findings:
        raise typer.Exit(1)
    console.print(f"[green]✓[/green] audit chain intact: {checked} rows")


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None) -> None:
    """Create or migrate the schema to the newest revision."""
    url = settings_for(db).db_url
    try:
        store = Store(url)
        store.upgrade()
    except Exception as exc:
        raise fail(f"upgrade failed: {exc.__class__.__name__}: {exc}") from None
    console.print("[green]✓[/green] schema up to date")


@keys_app.command("create")
def keys_create(role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")],
                name: Annotated[str, typer.Option(help="who or what uses the key")], db: DbOpt = None) -> None:
    """Create an API key; the secret is printed once (stdout) and only its hash is stored."""
    if role not in ROLES:
        raise fail(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    service = service_for(db)
    key, secret = service.store.create_key(role, name)
    say(("created key", "green"), f"{key.id} ({role}, {name})")
    print(secret)


@keys_app.command("list")
def keys_list(db: DbOpt = None) -> None:
    """List keys (never their secrets)."""
    service = service_for(db)
    table = Table()
    for col in ("id", "role", "name", "created", "revoked"):
        table.add_column(col)
    for k in service.store.list_keys():
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.created_ms / 1000))
        revoked = time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.revoked_ms / 1000)) if k.revoked_ms else ""
        table.add_row(k.id, k.role, Text(k.name), created, revoked)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, db: DbOpt = None) -> None:
    """Revoke a key; it stops working at once."""
    service = service_for(db)
    if not service.store.revoke_key(key_id):
        raise fail(f"no active key {key_id!r}", 1)
    say(("revoked", "green"), key_id, console)


@app.command()
def bench(events: Annotated[int | None, typer.Option(
              min=100, help="generated events (default 100,000; with --stream 20,000)")] = None, db: DbOpt = None,
          batch: Annotated[int, typer.Option(min=1, max=10_000, help="events per transaction")] = 1000,
          stream: Annotated[bool, typer.Option(
              "--stream", help="through Redis Streams to 1 and 2 worker processes, PostgreSQL store")] = False,
          redis_url: Annotated[str | None, typer.Option(
              "--redis", help="with --stream: redis://HOST:PORT (default: a throw-away server)")] = None,
          ordering: Annotated[str | None, typer.Option(
              help="with --stream: the streams' ordering, account (default) or exact")] = None,
          rounds: Annotated[int | None, typer.Option(
              min=1, max=20, help="with --stream: rounds of (replay, 1 worker, 2 workers); medians quoted "
                                  "(default 3)")] = None) -> None:
    """Replay a generated mix through the whole path, persistence included, and print events/s."""
    from clearcircle.synthetic import generate

    if stream:  # issue 10 (clearcircle/cli/stream.py): --db defaults to a throw-away PostgreSQL
        from clearcircle.cli.stream import bench_stream

        return bench_stream(events or 20_000, db, redis_url, batch, ordering=ordering or "account",
                            rounds=rounds or 3)
    if redis_url is not None:
        raise fail("--redis needs --stream")
    if rounds is not None:
        raise fail("--rounds needs --stream")
    if ordering is not None:
        raise fail("--ordering needs --stream")
    events = events or 100_000

    with tempfile.TemporaryDirectory() as tmp:
        url = db or f"sqlite:///{tmp}/bench.db"
        settings = settings_for(url)
        settings.key_file = Path(tmp) / "bench.key"
        service = open_service_or_fail(settings)
        started = time.perf_counter()
        lines = [orjson.dumps(e) for e in generate(events)]  # the replay path: JSONL lines in
        started = time.perf_counter()
        parsed = [parse_event_json(line) for line in lines]
        parse_s = time.perf_counter() - started
        verdicts: Counter[str] = Counter()
        decide_started = time.perf_counter()
        for i in range(0, len(parsed), batch):
            for outcome in service.pipeline.submit(parsed[i : i + batch]):
                verdicts[outcome.decision["verdict"]] += 1
        decide_s = time.perf_counter() - decide_started
        service.close()
    total = parse_s + decide_s
    console.print(f"events: {len(parsed)}  batch: {batch}  store: {'sqlite (temp file)' if not db else db}")
    console.print(f"parse+validate: {len(parsed) / parse_s:,.0f} events/s")
    console.print(f"decide+persist: {len(parsed) / decide_s:,.0f} events/s")
    console.print(f"[bold]end to end: {len(parsed) / total:,.0f} events/s[/bold] ({total:.1f}s)")
    console.print("verdicts: " + ", ".join(f"{k}={v}" for k, v in verdicts.most_common()))


def main() -> None:  # pragma: no cover - console entry point
    app()
