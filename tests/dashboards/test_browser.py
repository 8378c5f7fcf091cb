"""End to end in headless Chromium: `o2c console` (Streamlit) over a sandbox-fed, reconciled store.

The store is filled the real way (sandbox simulators on loopback -> probes -> collector -> store,
then ``run_reconcile``); the console runs as `o2c console` behind a trusted-proxy header, so one
server serves an operator and a viewer. Every page loads without an exception (a screenshot of
each is kept under tests/artifacts or $O2C_TEST_ARTIFACTS); a resync triggered from the page
lands in the audit with the operator's name; a viewer's trigger is disabled and writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

import store
from reconciler import run_reconcile
from reconciler.resync import list_requests, read_audit
from sandbox.estate import Estate
from tests.dashboards import browser
from tests.reconciler.test_accuracy import fill_store
from tests.system_packages import require_binaries

pytestmark = pytest.mark.slow

SCALE = 0.03
ROLES = {"otto": "operator", "vera": "viewer", "anna": "approver"}


@pytest.fixture(scope="module")
def sandbox_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[store.Store]:
    """A SQLite store synced from the sandbox by the collector, reconciled twice a week apart."""
    workdir = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{workdir / 'o2c.sqlite3'}"
    engine = store.create_store_engine(url)
    store.upgrade(engine)
    engine.dispose()
    db = store.Store(url)
    estate = Estate.generate(seed=7, scale=SCALE)
    fill_store(estate, db, workdir)
    run_reconcile(db, as_of=estate.now - timedelta(days=7))
    run_reconcile(db, as_of=estate.now)
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_binaries("chromium")["chromium"]


@pytest.fixture(scope="module")
def console_url(sandbox_store: store.Store) -> Iterator[str]:
    env = {
        "O2C_CONSOLE__IDENTITY_HEADER": "X-Forwarded-User",
        "O2C_CONSOLE__ROLES": json.dumps(ROLES),
        "O2C_CONSOLE__COLLECTOR_METRICS_URL": "",
        "O2C_CONSOLE__CACHE_TTL_SECONDS": "0",
    }
    with browser.console(sandbox_store.url, env) as url:
        yield url


@pytest.fixture(scope="module")
def chrome(chromium: str, console_url: str) -> Iterator[Browser]:
    # After the store is filled: sync Playwright keeps an event loop running in this thread,
    # and the collector's sync (asyncio.run) must come first.
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield instance
        instance.close()


def page_as(chrome: Browser, user: str) -> Page:
    context = chrome.new_context(
        extra_http_headers={"X-Forwarded-User": user}, viewport={"width": 1400, "height": 1000}
    )
    return context.new_page()


def deal_with_breaks(db: store.Store) -> str:
    from dashboards.service import deals_with_breaks, read_register
    from tests.dashboards.conftest import VIEWER

    return deals_with_breaks(read_register(db, VIEWER))[0]


def test_every_page_loads_without_an_exception_and_is_kept_as_a_screenshot(
    chrome: Browser, console_url: str, sandbox_store: store.Store
) -> None:
    page = page_as(chrome, "otto")
    artifacts = browser.artifacts_dir()
    deal = deal_with_breaks(sandbox_store)
    for name, path in browser.PAGES.items():
        seconds = browser.open_page(page, console_url, path,
                                    query=f"deal={deal}" if name == "deal" else "")  # fmt: skip
        assert browser.exceptions(page) == [], name
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0, name
        assert "otto" in page.locator('[data-testid="stSidebar"]').inner_text()
        shot = artifacts / f"console-{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"{name}: drawn in {seconds:.2f} s")
        if name == "deal":
            assert page.get_by_role("heading", name=f"({deal})").count() == 1


def test_a_resync_triggered_from_the_page_appears_in_the_audit_with_the_operator(
    chrome: Browser, console_url: str, sandbox_store: store.Store
) -> None:
    page = page_as(chrome, "otto")
    browser.open_page(page, console_url, "resyncs")
    page.get_by_role("button", name="Resync…").click()
    dialog = page.get_by_role("dialog")
    confirm = dialog.get_by_role("button", name="Confirm resync")
    confirm.wait_for()
    page.screenshot(path=str(browser.artifacts_dir() / "console-resync-confirm.png"))
    confirm.click()
    sent = dialog.get_by_role("button", name="Requested")
    sent.wait_for(timeout=20_000)
    assert sent.is_disabled()  # no second submit from the same confirmation
    audit = read_audit(sandbox_store)
    requested = audit.filter((audit["kind"] == "requested") & (audit["actor"] == "otto"))
    assert requested.height == 1
    assert list_requests(sandbox_store)["requested_by"].to_list() == ["otto"]
    dialog.get_by_role("button", name="Done").click()
    page.get_by_text("recorded as otto").wait_for(timeout=20_000)  # the page's message
    browser.wait_drawn(page)
    page.screenshot(path=str(browser.artifacts_dir() / "console-resync-audit.png"), full_page=True)


def test_a_viewer_cannot_trigger_a_resync(
    chrome: Browser, console_url: str, sandbox_store: store.Store
) -> None:
    before = read_audit(sandbox_store).height
    page = page_as(chrome, "vera")
    browser.open_page(page, console_url, "resyncs")
    button = page.get_by_role("button", name="Resync…")
    assert button.is_disabled()
    assert page.get_by_text("triggering needs the operator role").count() == 1
    button.click(force=True)  # a disabled button does nothing even when clicked
    browser.wait_drawn(page)
    assert page.get_by_role("dialog").count() == 0
    assert read_audit(sandbox_store).height == before


def test_the_break_queue_downloads_as_csv_with_every_row(
    chrome: Browser, console_url: str, sandbox_store: store.Store
) -> None:
    from dashboards.service import BreakFilters, break_queue, read_register
    from tests.dashboards.conftest import VIEWER

    page = page_as(chrome, "vera")
    browser.open_page(page, console_url, "breaks")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    csv = pl.read_csv(download.value.path())
    queue = break_queue(read_register(sandbox_store, VIEWER), BreakFilters(), datetime.now(UTC))
    assert csv.height == queue.height > 0
    assert set(csv["break_id"]) == set(queue["break_id"])
