"""Prometheus metrics of the HTTP API: events by type, verdicts, rules fired, decision latency, open cases,
batches decided again after a conflict, SQLite's log and its checkpoints.

Each app gets its own CollectorRegistry (tests build many apps in one process; the global registry would
refuse the second). `GET /metrics` is answered by the `MetricsMiddleware` before routing, like /healthz it
needs no key: it holds counts and rule ids, never event content or identifiers. Keep it on a private
interface or behind the proxy that scrapes it.

The open-cases gauge is read from the store at scrape time (one indexed COUNT), so it is right whatever
process opened or closed the cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from clearcircle.store import tables as t
from clearcircle.store.repository import Store

# decision latency: sub-millisecond to a few seconds (a batch of 1000 on a busy PostgreSQL)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _OpenCases(Collector):
    """Queue sizes: review cases still open, by the rule source (rule, report, ...)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("clearcircle_open_cases", "Review cases with status open (the review queue)",
                                   labels=["source"])
        with self.store.reads.connect() as conn:
            rows = conn.execute(select(t.cases.c.source, func.count()).where(t.cases.c.status == "open")
                                .group_by(t.cases.c.source)).all()
        for source, count in rows:
            family.add_metric([source], count)
        yield family


class _Conflicts(Collector):
    """Batches this process decided again holding the lock after a conflict with another writer: the cost of
    several writers on one store (a high rate means they keep deciding the same accounts at once)."""

    def __init__(self, read: Callable[[], int]) -> None:
        self.read = read

    def collect(self) -> Iterable[CounterMetricFamily]:
        yield CounterMetricFamily("clearcircle_unit_conflicts", "Batches decided again, holding the lock, after "
                                  "another writer changed the same accounts first", value=self.read())


class _WalCheckpoints(Collector):
    """SQLite's log as the checkpoint thread (store/checkpoint.py) found it: a log that stays long, or copies
    that must hold the writers (forced), mean the thread cannot keep up or other processes keep it long."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        checkpoints = self.store.checkpoints
        if checkpoints is None:  # PostgreSQL, or SQLite in memory
            return
        done = CounterMetricFamily("clearcircle_sqlite_checkpoints", "Checkpoints of the SQLite log by the "
                                   "checkpoint thread (forced: copied holding the writers)", labels=["kind"])
        done.add_metric(["passive"], checkpoints.checkpoints - checkpoints.forced)
        done.add_metric(["forced"], checkpoints.forced)
        yield done
        yield GaugeMetricFamily("clearcircle_sqlite_log_pages", "Length of the SQLite log in pages at the last "
                                "checkpoint (started afresh once copied whole)", value=checkpoints.log_pages)
        yield GaugeMetricFamily("clearcircle_sqlite_log_longest_pages", "Longest SQLite log a checkpoint found, "
                                "in pages, since the process started", value=checkpoints.longest)


class Metrics:
    """The API's metrics; `observe` is called once per submitted request with its outcomes."""

    def __init__(self, store: Store, conflicts: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("clearcircle_events", "Events received, by type and outcome (decided, duplicate: the "
                              "id was decided before, published: put on the stream by async=true)",
                              ["type", "outcome"], registry=r)
        self.verdicts = Counter("clearcircle_verdicts", "Decisions made, by verdict", ["verdict"], registry=r)
        self.rules = Counter("clearcircle_rule_hits", "Rules fired, by rule and mode (enforce/shadow)",
                             ["rule", "mode"], registry=r)
        self.latency = Histogram("clearcircle_decision_seconds", "Time to decide and commit a request's events",
                                 ["route"], buckets=_BUCKETS, registry=r)
        self.requests = Counter("clearcircle_http_requests", "HTTP requests answered, by method and status",
                                ["method", "status"], registry=r)
        r.register(_OpenCases(store))
        r.register(_Conflicts(conflicts))
        r.register(_WalCheckpoints(store))
        # labelled children by (metric, labels): `labels()` validates and locks on every call, 4x an `inc`
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, made once."""
        child = self._children.get((metric, *labels))
        if child is None:  # label sets are few (types, verdicts, rules, statuses): the dict stays small
            child = self._children[(metric, *labels)] = metric.labels(*labels)
        return child

    def observe(self, route: str, types: Sequence[str], outcomes: Sequence[Any], seconds: float) -> None:
        """Count one request's events (types in order) and their outcomes (pipeline.Outcome)."""
        child = self.child
        child(self.latency, route).observe(seconds)
        for kind, outcome in zip(types, outcomes, strict=True):
            if outcome.duplicate:
                child(self.events, kind, "duplicate").inc()
                continue
            d = outcome.decision
            child(self.events, kind, "decided").inc()
            child(self.verdicts, d["verdict"]).inc()
            for rule in d["rules"]:
                child(self.rules, rule, "enforce").inc()
            for rule in d["shadow_rules"]:
                child(self.rules, rule, "shadow").inc()

    def accepted(self, types: Sequence[str]) -> None:
        """Count events published to the stream by `?async=true` (a worker decides and counts them later)."""
        for kind in types:
            self.child(self.events, kind, "published").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware: answers GET /metrics, and counts every other response by method and status."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            body = self.metrics.render()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
            return
        method = scope["method"] if scope["method"] in _METHODS else "other"  # labels stay a small set

        async def counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.metrics.child(self.metrics.requests, method, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)
