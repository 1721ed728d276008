"""`clearcircle bench-load` runs end to end (a smoke test: it checks figures are printed, never their values).

Cost: about 25 s a run on a busy 2-core machine: `--workers 2` with bench-load's own client, and one server
process driven by wrk (scripts/test installs Debian's wrk; skipped where it is not installed).
"""

from __future__ import annotations

import itertools
import re
import shutil

import orjson
import pytest
from typer.testing import CliRunner

from clearcircle.cli.load_bench import _event_bodies, _registrations
from clearcircle.cli.main import app


@pytest.mark.parametrize(("workers", "client"), [
    (2, "python"),
    pytest.param(1, "wrk", marks=pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")),
])
def test_bench_load_prints_throughput_latency_and_server_cpu(workers, client):
    result = CliRunner().invoke(app, ["bench-load", "--seconds", "1", "--batch", "20", "--client", client,
                                      "--workers", str(workers), "--log-level", "warning"])
    assert result.exit_code in (0, 1), result.output  # 1: targets not met, which a test machine may well be
    out = " ".join(result.output.split())
    assert f"{workers} worker process(es)" in out
    assert "5,000 accounts registered (untimed)" in out
    assert ("client: wrk" if client == "wrk" else "client: bench-load's own") in out
    assert re.search(r"single events \(8 connections\): [1-9]\d* requests", out), out
    assert re.search(rf"batches of 20 \({2 * workers} connections\): [1-9]\d* requests", out), out  # 2 a worker
    assert len(re.findall(r"server CPU: \d+\.\ds = \d+\.\d\d ms a request", out)) == 2, out
    assert "non-200" not in out, out


def test_bench_load_refuses_an_unknown_client():
    result = CliRunner().invoke(app, ["bench-load", "--client", "locust"])
    assert result.exit_code == 2 and "one of auto, wrk, python" in result.output


def test_the_timed_phases_send_the_traffic_after_the_registrations():
    """Registrations go once, untimed; a timed phase is the mix on registered accounts (ids per phase)."""
    registrations = [orjson.loads(b) for b in _registrations()]
    assert len(registrations) == 5000 and {e["type"] for e in registrations} == {"account_registered"}
    registered = {e["actor"] for e in registrations}
    timed = [orjson.loads(b) for b in itertools.islice(_event_bodies("s"), 3000)]
    assert "account_registered" not in {e["type"] for e in timed}
    assert len({e["type"] for e in timed}) >= 5  # a mix, not one kind
    assert {e["actor"] for e in timed} <= registered
    assert all(e["id"].startswith("s0-") for e in timed)
