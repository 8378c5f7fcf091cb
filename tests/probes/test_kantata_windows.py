"""A long Kantata read has several pages in flight and still loses nothing: every record once,
pages in order, and each page's cursor covers every record stamped before it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import httpx
import orjson
import polars as pl
import pytest

from probes import Page
from sandbox.estate import Estate
from sandbox.server import Sandbox
from tests.probes.conftest import FAST, ProbeFactory, fired, inject, read_all, rows
from tests.probes.test_contract import vendor_ids

pytestmark = pytest.mark.anyio


class InFlight:
    """Counts the requests a client has sent and not yet had answered (its event hooks)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.now = self.most = 0
        client.event_hooks["request"].append(self.sent)
        client.event_hooks["response"].append(self.answered)

    async def sent(self, request: httpx.Request) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    async def answered(self, response: httpx.Response) -> None:
        self.now -= 1


def since(page: Page) -> datetime:
    text = orjson.loads(page.cursor or "{}")["since"]
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def assert_cursors_cover_what_came_before(pages: list[Page], estate: Estate) -> None:
    """Cursors never go back, and a page's cursor is only past records already passed on."""
    vendor = estate.frame("kantata", "time_entries").select(
        "id", pl.col("updated_at").dt.truncate("1s")
    )
    cursors = [since(p) for p in pages if p.cursor is not None]
    assert cursors == sorted(cursors)
    passed: set[str] = set()
    for page in pages:
        if page.frames:
            passed.update(page.frames["time_entries"]["source_id"].to_list())
        if page.cursor is None:
            continue
        before = vendor.filter(pl.col("updated_at") < since(page))["id"].to_list()
        assert set(before) <= passed, (page.cursor, len(set(before) - passed))


@pytest.mark.parametrize("in_flight", [1, 4])
async def test_a_long_read_returns_every_record_once_in_order(
    in_flight: int, faults: Sandbox, make_probe: ProbeFactory, estate: Estate
) -> None:
    probe = make_probe("kantata", settings=replace(FAST, concurrency=in_flight))
    requests = InFlight(probe.client)
    pages = await read_all(probe, "time_entries")

    ids = rows(pages, "time_entries")["source_id"].to_list()
    assert sorted(ids) == vendor_ids(estate, "kantata", "time_entries")
    assert len(ids) == len(set(ids))
    assert requests.most == 1 if in_flight == 1 else 1 < requests.most <= in_flight
    assert_cursors_cover_what_came_before(pages, estate)


async def test_records_modified_while_windows_are_read_are_not_skipped(
    faults: Sandbox, make_probe: ProbeFactory, estate: Estate
) -> None:
    # Each fault moves a record already counted in its window to "now": later pages shift.
    inject(
        faults,
        "kantata",
        {"endpoint": "time_entries.list", "kind": "change_between_pages", "rate": 0.5, "count": 12},
    )
    probe = make_probe("kantata", settings=replace(FAST, concurrency=4))
    pages = await read_all(probe, "time_entries")

    assert fired(faults, "kantata") > 0
    ids = rows(pages, "time_entries")["source_id"].to_list()
    assert sorted(set(ids)) == vendor_ids(estate, "kantata", "time_entries")
    assert_cursors_cover_what_came_before(pages, estate)
