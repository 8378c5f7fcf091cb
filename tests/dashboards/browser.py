"""Drive the real console in headless Chromium: start `o2c console` on a free port, open pages,
wait until Streamlit has finished drawing them, time them, take screenshots.

Shared by the end-to-end test and ``bench/console.py``. Chromium is Debian's (``/usr/bin/chromium``
through ``tests/system_packages.require_binaries``); Playwright drives it by ``executable_path``,
so nothing is downloaded at run time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
PAGES: dict[str, str] = {
    "executive": "",
    "breaks": "breaks",
    "deal": "deal",
    "resyncs": "resyncs",
    "sources": "sources",
}
"""Page name -> its URL path (the executive page is the default, at the root)."""

_DRAWN = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app !== null
    && app.getAttribute('data-test-script-state') === 'notRunning'
    && document.querySelector('[data-testid="stSkeleton"]') === null
    && document.querySelector('[data-testid="stSpinner"]') === null
    && document.querySelector('[data-testid="stMain"] h1') !== null;
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def artifacts_dir() -> Path:
    """Where screenshots go: $O2C_TEST_ARTIFACTS, else tests/artifacts (gitignored)."""
    path = Path(os.environ.get("O2C_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def console(store_url: str, env: Mapping[str, str], *, timeout: float = 60) -> Iterator[str]:
    """`o2c console` on a free port over the store, until the block ends; yields its base URL."""
    port = free_port()
    variables = {k: v for k, v in os.environ.items() if not k.startswith("O2C_")}
    variables |= {"O2C_DATABASE_URL": store_url, "O2C_CONFIG_FILE": os.devnull, **env}
    variables.pop("O2C_CONFIG_FILE")  # no o2c.toml of the working directory leaks in
    log = open(artifacts_dir() / f"console-{port}.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "o2c.cli", "console", "--port", str(port)],
        cwd=artifacts_dir(), env=variables, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"o2c console exited with {process.returncode}; see {log.name}")
            try:
                if httpx.get(f"{base}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"o2c console did not answer in {timeout:.0f} s; see {log.name}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_drawn(page: Page, timeout: float = 30) -> None:
    """Until Streamlit finished the run and no placeholder is left (charts and tables drawn)."""
    page.wait_for_function(_DRAWN, timeout=timeout * 1000, polling=50)


def open_page(page: Page, base: str, path: str, *, query: str = "", timeout: float = 30) -> float:
    """Load a page and wait until it is drawn; returns the seconds it took."""
    started = time.perf_counter()
    page.goto(f"{base}/{path}{'?' + query if query else ''}")
    wait_drawn(page, timeout)
    return time.perf_counter() - started


def exceptions(page: Page) -> list[str]:
    """The text of every exception Streamlit shows on the page."""
    found = page.locator('[data-testid="stException"]')
    return [found.nth(i).inner_text() for i in range(found.count())]
