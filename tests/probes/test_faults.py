"""Each fault the sandbox can inject, and what a probe does about it.

Faults go in through the sandbox's own fault injection; the probes run unchanged. Transient
failures are retried until the read completes with exactly the vendor's records; persistent ones
raise the documented error and never end a read as an empty success.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from probes import (
    Page,
    ProbeAuthError,
    ProbeMalformedPage,
    ProbeQuotaExhausted,
    ProbeSettings,
    ProbeUnavailable,
)
from sandbox.estate import Estate
from sandbox.server import Sandbox
from tests.probes.conftest import FAST, ProbeFactory, fired, inject, read_all, rows
from tests.probes.test_contract import vendor_ids

pytestmark = pytest.mark.anyio

# Every system with a paged stream big enough for several pages at page size 100.
PAGED = [
    ("salesforce", "opportunities", "query*"),
    ("kantata", "invoices", "invoices.list"),
    ("netsuite", "invoices", "suiteql"),
    ("stripe", "invoices", "invoices.list"),
]
SMALL_PAGES = replace(FAST, page_size=100)
SF_PAGES = replace(FAST, page_size=200)  # Salesforce's smallest batch


def settings_for(system: str) -> ProbeSettings:
    return SF_PAGES if system == "salesforce" else SMALL_PAGES


async def drain(source: AsyncIterator[Page], into: list[Page]) -> None:
    """Keep every page a read yields before it fails (what a collector would have written)."""
    async for page in source:
        into.append(page)


async def read_ids(make_probe: ProbeFactory, system: str, stream: str) -> tuple[list[str], object]:
    probe = make_probe(system, settings=settings_for(system))
    pages = await read_all(probe, stream)
    return sorted(rows(pages, probe.entities[stream])["source_id"].to_list()), probe


@pytest.mark.parametrize(("system", "stream", "endpoint"), PAGED)
async def test_server_errors_are_retried_and_nothing_is_lost(
    system: str,
    stream: str,
    endpoint: str,
    faults: Sandbox,
    make_probe: ProbeFactory,
    estate: Estate,
) -> None:
    inject(
        faults,
        system,
        {"endpoint": endpoint, "kind": "error", "status": 503, "after": 1, "count": 2},
    )
    ids, probe = await read_ids(make_probe, system, stream)
    assert ids == vendor_ids(estate, system, stream)
    assert fired(faults, system) == 2
    assert probe.stats.retries >= 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(("system", "stream", "endpoint"), PAGED)
async def test_rate_limit_bursts_are_waited_out(
    system: str,
    stream: str,
    endpoint: str,
    faults: Sandbox,
    make_probe: ProbeFactory,
    estate: Estate,
) -> None:
    # Salesforce signals with 403 REQUEST_LIMIT_EXCEEDED below its budget, the others with 429.
    inject(faults, system, {"endpoint": endpoint, "kind": "rate_limit", "after": 1, "count": 3})
    ids, _ = await read_ids(make_probe, system, stream)
    assert ids == vendor_ids(estate, system, stream)
    assert fired(faults, system) == 3


@pytest.mark.parametrize(("system", "stream", "endpoint"), PAGED)
async def test_a_hang_becomes_a_timeout_and_a_retry(
    system: str,
    stream: str,
    endpoint: str,
    faults: Sandbox,
    make_probe: ProbeFactory,
    estate: Estate,
) -> None:
    inject(
        faults,
        system,
        {"endpoint": endpoint, "kind": "hang", "seconds": 10, "after": 1, "count": 1},
    )
    started = time.monotonic()
    ids, probe = await read_ids(make_probe, system, stream)
    assert ids == vendor_ids(estate, system, stream)
    assert FAST.timeout.read <= time.monotonic() - started < 10
    assert probe.stats.retries >= 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(("system", "stream", "endpoint"), PAGED)
@pytest.mark.parametrize("kind", ["truncated_json", "malformed_json"])
async def test_a_broken_body_is_read_again(
    system: str,
    stream: str,
    endpoint: str,
    kind: str,
    faults: Sandbox,
    make_probe: ProbeFactory,
    estate: Estate,
) -> None:
    inject(faults, system, {"endpoint": endpoint, "kind": kind, "after": 1, "count": 2})
    ids, _ = await read_ids(make_probe, system, stream)
    assert ids == vendor_ids(estate, system, stream)
    assert fired(faults, system) == 2


@pytest.mark.parametrize(("system", "stream", "endpoint"), PAGED)
async def test_a_body_that_stays_broken_fails_the_read_and_keeps_a_safe_cursor(
    system: str,
    stream: str,
    endpoint: str,
    faults: Sandbox,
    make_probe: ProbeFactory,
    estate: Estate,
) -> None:
    # NetSuite's first page also runs two look-ups (currency, job) through the same endpoint.
    after = 3 if system == "netsuite" else 1
    inject(faults, system, {"endpoint": endpoint, "kind": "truncated_json", "after": after})
    probe = make_probe(system, settings=settings_for(system))
    pages: list[Page] = []
    with pytest.raises(ProbeMalformedPage) as raised:
        await drain(probe.read(stream, None), pages)
    assert raised.value.system == system and raised.value.transient
    assert pages, "the first page was whole and is kept"
    assert all(p.cursor is not None for p in pages)

    # Resuming from the last safe cursor (what the store holds) completes the stream.
    faults.simulators[system].faults.reset()
    rest = await read_all(
        make_probe(system, settings=settings_for(system)), stream, pages[-1].cursor
    )
    entity = probe.entities[stream]
    got = set(rows(pages, entity)["source_id"]) | set(rows(rest, entity)["source_id"])
    assert sorted(got) == vendor_ids(estate, system, stream)


@pytest.mark.parametrize(("system", "stream", "endpoint"), PAGED)
async def test_records_duplicated_across_pages_are_read_once(
    system: str,
    stream: str,
    endpoint: str,
    faults: Sandbox,
    make_probe: ProbeFactory,
    estate: Estate,
) -> None:
    # The fault fires inside the continuation handler, whose name is query_more on Salesforce.
    endpoint = endpoint.replace("query*", "query_more")
    inject(faults, system, {"endpoint": endpoint, "kind": "duplicate_page"})
    probe = make_probe(system, settings=settings_for(system))
    pages = await read_all(probe, stream)
    frames = [p.frames[probe.entities[stream]] for p in pages if p.frames]
    ids = [i for f in frames for i in f["source_id"].to_list()]
    assert sorted(set(ids)) == vendor_ids(estate, system, stream)
    # Keyset probes drop a re-served record themselves; locator/cursor APIs leave it to the
    # idempotent upsert. Either way no id is missing and the duplicates are identical rows.
    assert len(ids) - len(set(ids)) <= fired(faults, system)


@pytest.mark.parametrize(
    ("system", "stream", "endpoint"),
    # Kantata time entries: approvals stamp hundreds of entries with the same second.
    [*PAGED, ("kantata", "time_entries", "time_entries.list")],
)
async def test_records_changing_between_pages_are_not_skipped(
    system: str,
    stream: str,
    endpoint: str,
    faults: Sandbox,
    make_probe: ProbeFactory,
    estate: Estate,
) -> None:
    endpoint = endpoint.replace("query*", "query_more")
    # A handful of records modified while the read pages (each would push one record past a
    # plain page boundary).
    inject(faults, system, {"endpoint": endpoint, "kind": "change_between_pages", "count": 5})
    ids, _ = await read_ids(make_probe, system, stream)
    assert ids == vendor_ids(estate, system, stream)
    if stream == "time_entries":  # the keyset windows stepped by page, and the fault hit them
        assert fired(faults, system) > 0


@pytest.mark.parametrize(
    ("system", "stream", "endpoint"),
    [("salesforce", "opportunities", "query*"), ("netsuite", "invoices", "suiteql")],
)
async def test_a_token_that_expires_mid_read_is_renewed(
    system: str,
    stream: str,
    endpoint: str,
    faults: Sandbox,
    make_probe: ProbeFactory,
    estate: Estate,
) -> None:
    inject(faults, system, {"endpoint": endpoint, "kind": "token_expiry", "after": 1, "count": 1})
    ids, probe = await read_ids(make_probe, system, stream)
    assert ids == vendor_ids(estate, system, stream)
    assert probe.stats.token_refreshes == 1  # type: ignore[attr-defined]


async def test_a_source_that_stays_down_raises_unavailable(
    faults: Sandbox, make_probe: ProbeFactory
) -> None:
    inject(faults, "kantata", {"kind": "down"})
    probe = make_probe("kantata")
    with pytest.raises(ProbeUnavailable) as raised:
        await read_all(probe, "projects")
    assert raised.value.status_code == 503 and raised.value.transient
    assert probe.stats.requests == FAST.retry.attempts
    assert not (await probe.health()).ok


async def test_refused_credentials_raise_an_auth_error_without_retrying(
    sandbox: Sandbox, make_probe: ProbeFactory
) -> None:
    from probes import KantataConfig

    config = KantataConfig(base_url=f"{sandbox.urls['kantata']}/api/v1", token="wrong")
    probe = make_probe("kantata", config=config)
    with pytest.raises(ProbeAuthError) as raised:
        await read_all(probe, "projects")
    assert not raised.value.transient
    assert probe.stats.requests == 1
    assert "wrong" not in str(raised.value)


async def test_salesforce_stops_as_partial_at_the_budget_reserve(
    sandbox: Sandbox, make_probe: ProbeFactory
) -> None:
    sim = sandbox.simulators["salesforce"]
    limit = sim.daily_api_limit  # type: ignore[attr-defined]
    try:
        # The reserve is 10%: one query below it, then the budget says stop.
        sim.set_api_usage(int(limit * 0.9) - 1)  # type: ignore[attr-defined]
        probe = make_probe("salesforce", settings=SF_PAGES)
        pages = await read_all(probe, "opportunities")
        assert pages[-1].partial and "budget" in pages[-1].partial
        assert pages[0].records > 0 and pages[0].cursor is not None
        assert sum(p.records for p in pages) < 300
        assert probe.quota is not None and probe.quota.limit == limit

        # At the limit itself the API refuses: not retried, and said so.
        sim.set_api_usage(limit)  # type: ignore[attr-defined]
        fresh = make_probe("salesforce")
        with pytest.raises(ProbeQuotaExhausted) as raised:
            await fresh.count("opportunities")
        assert raised.value.used == limit and raised.value.limit == limit
        assert fresh.stats.retries == 0
    finally:
        sim.set_api_usage(0)  # type: ignore[attr-defined]
