"""Observability: GET /metrics (Prometheus text) counts what the API did; JSON log lines carry the event id."""

from __future__ import annotations

import io
import logging

import orjson
from api_fixtures import event, induced_share_post, open_api
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from clearcircle.obs.logs import JsonFormatter, configure, event_context, redact
from clearcircle.store import tables as t
from clearcircle.store.unit import UnitConflict


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found, name, **labels) -> float:  # noqa: ANN001
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_events_verdicts_rules_latency_and_open_cases(sqlite_url, tmp_path):
    with open_api(sqlite_url, tmp_path) as api:
        assert api.post_event(induced_share_post("m-1", actor="u-a")).status_code == 200
        assert api.post_event(induced_share_post("m-1", actor="u-a")).json()["duplicate"] is True
        pipeline, clash = api.svc.pipeline, [True]
        optimistic = pipeline._submit

        def clash_once(events, exclusive=False):  # noqa: ANN001, ANN202
            if clash and not exclusive:  # another writer changed the same accounts first: decided again, locked
                clash.pop()
                raise UnitConflict("test")
            return optimistic(events, exclusive)

        pipeline._submit = clash_once
        assert api.post_batch([event("like", f"l-{i}") for i in range(4)]).status_code == 200
        with api.svc.store.engine.begin() as conn:  # cases opened elsewhere (another worker, a detector run)
            conn.execute(t.cases.insert(), [{"account": f"u-{i}", "event_id": "m-1", "source": "rule", "rules": "[]",
                                             "severity": 3, "status": "open", "created_ms": 1} for i in range(3)])
        assert api.client.get("/v1/signals").status_code == 401
        checkpoints = api.svc.store.checkpoints  # SQLite: the log copied by the store's checkpoint thread
        assert checkpoints.caught_up(timeout=30)  # every commit's copy done: the figures hold still
        response = api.client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        found = samples(response.text)
        with api.svc.store.engine.connect() as conn:
            open_cases = conn.execute(select(func.count()).select_from(t.cases)
                                      .where(t.cases.c.status == "open")).scalar_one()
    assert value(found, "clearcircle_events_total", type="post_created", outcome="decided") == 1
    assert value(found, "clearcircle_events_total", type="post_created", outcome="duplicate") == 1
    assert value(found, "clearcircle_events_total", type="like", outcome="decided") == 4
    assert value(found, "clearcircle_verdicts_total", verdict="limit_reach") >= 1
    assert value(found, "clearcircle_rule_hits_total", rule="induced-share-text", mode="enforce") == 1
    assert value(found, "clearcircle_decision_seconds_count", route="single") == 2
    assert value(found, "clearcircle_decision_seconds_count", route="batch") == 1
    assert value(found, "clearcircle_http_requests_total", method="POST", status="200") == 3
    assert value(found, "clearcircle_http_requests_total", method="GET", status="401") == 1
    assert open_cases >= 3
    assert value(found, "clearcircle_unit_conflicts_total") == 1
    assert sum(v for (name, _l), v in found.items() if name == "clearcircle_open_cases") == open_cases
    assert value(found, "clearcircle_sqlite_checkpoints_total", kind="passive") >= 1
    assert value(found, "clearcircle_sqlite_checkpoints_total", kind="forced") == checkpoints.forced == 0
    assert value(found, "clearcircle_sqlite_log_longest_pages") == checkpoints.longest > 0


def test_json_logs_carry_the_event_id_on_every_line(sqlite_url, tmp_path):
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure("INFO", buffer)
    try:
        with open_api(sqlite_url, tmp_path) as api:
            submit = api.svc.pipeline.submit

            def logged_submit(events):  # noqa: ANN001, ANN202 - a line logged deep in the worker thread
                logging.getLogger("clearcircle.pipeline").info("deciding %d", len(events))
                return submit(events)

            api.svc.pipeline.submit = logged_submit
            assert api.post_event(induced_share_post("log-1")).status_code == 200
            assert api.post_batch([event("like", "log-2"), event("like", "log-3")]).status_code == 200
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [orjson.loads(line) for line in buffer.getvalue().splitlines()]
    assert all({"ts", "level", "logger", "msg", "event_id"} <= line.keys() for line in lines)
    decided = [line for line in lines if line["logger"] == "clearcircle.decisions"]
    assert [d["event_id"] for d in decided] == ["log-1", "log-2", "log-3"]
    assert decided[0]["verdict"] == "limit_reach" and decided[0]["rules"] == ["induced-share-text"]
    inner = [line for line in lines if line["logger"] == "clearcircle.pipeline"]
    assert inner[0]["event_id"] == "log-1"  # the context variable followed the request into the thread pool


def test_formatter_masks_key_secrets_and_keeps_extras():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "key %s", ("cc_0123456789ab_SeCrEtSeCrEt-_xyz",),
                               None)
    record.verdict = "ban"
    with event_context("e-9"):
        line = orjson.loads(JsonFormatter().format(record))
    assert line["msg"] == "key cc_0123456789ab_***" and line["event_id"] == "e-9" and line["verdict"] == "ban"
    assert redact("no secret here") == "no secret here"


def test_fastapi_opentelemetry_is_looked_up_per_request_only_when_turned_on(sqlite_url, tmp_path, monkeypatch):
    """FastAPI's native telemetry asks OpenTelemetry for its providers on every request, SDK or not; off by
    default (Prometheus is the engine's metrics), on with CLEARCIRCLE_OTEL for a site that exports spans."""
    from opentelemetry import trace

    lookups = []
    real = trace.get_tracer_provider

    def counted():  # noqa: ANN202
        lookups.append(1)
        return real()

    monkeypatch.setattr(trace, "get_tracer_provider", counted)
    for otel, expect_lookups in ((False, False), (True, True)):
        lookups.clear()
        with open_api(sqlite_url, tmp_path, otel=otel) as api:
            for i in range(3):
                assert api.post_event(event("like", f"o-{otel}-{i}")).status_code == 200
        assert bool(lookups) is expect_lookups, (otel, len(lookups))
