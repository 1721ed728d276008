"""The moderator console end to end: the real app under uvicorn on a free port (SQLite store, data seeded through
the real pipeline), driven by Debian's Chromium through Playwright, as a moderator would use it.

Chromium is the system one (/usr/bin/chromium, `apt-get install chromium`; scripts/test installs it); Playwright's
own browser download is never used. Without Chromium the tests skip, except under CI=true, where they fail.
Screenshots go to the pytest tmp dir (or $CONSOLE_SCREENSHOT_DIR) and their paths are printed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from test_console_pages import POST_TEXT, SPAMMER, seed_console

from clearcircle.api.app import create_app
from clearcircle.config import Settings
from clearcircle.events.schemas import parse_event
from clearcircle.service import open_service

try:
    from playwright import sync_api as playwright_api
except ImportError:  # pip install -e '.[test]' brings it; under CI its absence is a failure, not a skip
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("playwright is not installed (pip install -e '.[test]')", allow_module_level=True)

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


def _chromium() -> str:
    found = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and os.access(p, os.X_OK)), None)
    if found is None:
        message = "Debian's chromium is not installed (apt-get install chromium; scripts/test does it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real app on 127.0.0.1:<free port>, with keys of each role and seeded data."""
    tmp = tmp_path_factory.mktemp("console-e2e")
    service = open_service(Settings(db_url=f"sqlite:///{tmp / 'e2e.db'}", key_file=tmp / "hash.key"))
    keys = {role: service.store.create_key(role, f"e2e-{role}")[1] for role in ("moderator", "integrator")}
    seeded = seed_console(service)
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning",
                                       lifespan="off"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "keys": keys, "service": service, **seeded}
    finally:
        uv.should_exit = True
        thread.join(10)
        service.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, locale="zh-CN")
    p = context.new_page()
    p.set_default_timeout(15_000)
    errors: list[str] = []
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    p.errors = errors
    try:
        yield p
    finally:
        context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("CONSOLE_SCREENSHOT_DIR")
    folder = Path(where) if where else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def snap(page: Any, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def log_in(page: Any, server: dict[str, Any], role: str) -> None:
    page.goto(f"{server['url']}/console/login")
    page.fill("input[name=key]", server["keys"][role])
    page.click("button[type=submit]")


def test_a_page_without_session_redirects_to_login(page, server, shots):
    page.goto(f"{server['url']}/console/accounts/{SPAMMER}")
    assert re.search(r"/console/login\?next=/console/accounts/u-downline$", page.url), page.url
    assert page.locator("input[name=key]").is_visible()
    snap(page, shots, "login")


def test_an_integrator_key_cannot_log_in(page, server):
    log_in(page, server, "integrator")
    error = page.get_by_test_id("login-error")
    assert "cannot use the console" in error.inner_text()
    assert page.url.endswith("/console/login")
    page.goto(f"{server['url']}/console/queue")
    assert "/console/login" in page.url


def test_moderator_claims_a_case_overturns_it_and_sees_the_account_restored(page, server, shots):
    log_in(page, server, "moderator")
    assert page.url.endswith("/console/queue")
    row = page.get_by_test_id("case-row").filter(has_text=SPAMMER)
    assert row.count() == 1
    snap(page, shots, "queue")

    row.get_by_test_id("claim").click()  # htmx swaps the row for its claimed state
    row.get_by_test_id("claimed-by").filter(has_text="you").wait_for()
    row.locator("a", has_text="#").click()

    assert re.search(r"/console/cases/\d+$", page.url)
    assert page.get_by_test_id("case-status").inner_text() == "open"
    marks = page.locator(".original mark").all_inner_texts()
    assert "发展下线" in marks and "躺赚" in marks
    assert page.get_by_test_id("original-text").first.inner_text().replace("\n", "") == POST_TEXT
    image = page.get_by_test_id("post-image").first
    assert image.evaluate("img => img.complete && img.naturalWidth") == 96  # the post's PNG, decoded
    assert "limited" in page.get_by_test_id("reach").inner_text()
    snap(page, shots, "case")

    page.check("input[name=decision][value=overturn]")
    page.fill("textarea[name=reason]", "A shop's own promotion, not recruiting: the words are quoted from a warning.")
    page.get_by_test_id("decide").click()
    assert page.get_by_test_id("case-status").inner_text() == "overturned"
    assert "reversed" in page.get_by_test_id("flash").inner_text()

    page.get_by_test_id("account-link").click()
    assert page.url.endswith(f"/console/accounts/{SPAMMER}")
    assert page.get_by_test_id("reach").inner_text() == "normal"
    assert page.get_by_test_id("restrictions").inner_text() == "none"
    assert page.get_by_test_id("strikes").inner_text() == "0"
    assert "overturned" in page.get_by_test_id("account-cases").inner_text()
    snap(page, shots, "account")
    # the store agrees with the page
    view = server["service"].store.account_state(SPAMMER).view(int(time.time() * 1000))
    assert not view.reach_limited and view.strikes == 0
    assert not page.errors, page.errors  # no CSP violation or script error on the way


def test_claiming_a_case_someone_took_meanwhile_says_so(page, server):
    from clearcircle import review

    service = server["service"]
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    service.pipeline.submit([parse_event({
        "id": "post-race", "type": "post_created", "occurred_at": at.isoformat(), "actor": "u-race",
        "body": {"surface": "moments", "text": "加入我们发展下线，在家躺赚"}})])
    log_in(page, server, "moderator")
    row = page.get_by_test_id("case-row").filter(has_text="u-race")
    assert row.get_by_test_id("claim").is_visible()
    case_id = review.list_cases(service.store, service.pack.settings, account="u-race")[0].id
    review.claim_case(service, case_id, "another-moderator")  # between loading the queue and clicking
    row.get_by_test_id("claim").click()
    message = page.locator("#messages").get_by_test_id("error")
    assert "claimed by 'another-moderator'" in message.inner_text()
    assert row.get_by_test_id("claim").is_visible()  # the row is left as it was


def test_other_pages_render_for_a_moderator(page, server, shots):
    log_in(page, server, "moderator")
    page.goto(f"{server['url']}/console/rules")
    assert page.get_by_test_id("rule-chart").is_visible()
    assert page.locator("tr[data-rule=induced-share-text] td").nth(3).inner_text() == "1"
    snap(page, shots, "rules")
    page.goto(f"{server['url']}/console/merchants")
    assert "上海某某食品有限公司" in page.get_by_test_id("merchants").inner_text()
    snap(page, shots, "merchants")
    page.goto(f"{server['url']}/console/campaigns")
    assert "spring-cleanup" in page.get_by_test_id("campaigns").inner_text()
    snap(page, shots, "campaigns")
    month = datetime.now(server["service"].pack.settings.zone).strftime("%Y-%m")
    page.goto(f"{server['url']}/console/reports?month={month}")
    frame = page.frame_locator("iframe.report")
    frame.locator("body").wait_for()
    assert month in frame.locator("body").inner_text()
    snap(page, shots, "reports")
    assert not page.errors, page.errors
