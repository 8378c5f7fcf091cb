"""Every probe, every stream, against the sandbox: a full read equals the vendor's data.

Written once and run over every (system, stream): the ids read are exactly the vendor's ids,
nothing is quarantined in the clean estate, each page carries a cursor, a read from the final
cursor returns only the lookback overlap, the source count matches, and one record re-fetched
maps to the same canonical row.
"""

from __future__ import annotations

import polars as pl
import pytest

from probes import PROBES, Page, Probe
from sandbox.estate import Estate
from tests.probes.conftest import ProbeFactory, read_all, rows

# (system, stream) -> the vendor object and filter whose ids the stream must return.
SOURCES: dict[tuple[str, str], tuple[str, str, pl.Expr | None]] = {
    ("salesforce", "accounts"): ("salesforce", "Account", None),
    ("salesforce", "opportunities"): ("salesforce", "Opportunity", None),
    ("kantata", "projects"): ("kantata", "workspaces", None),
    ("kantata", "time_entries"): ("kantata", "time_entries", None),
    ("kantata", "milestones"): ("kantata", "stories", pl.col("story_type") == "milestone"),
    ("kantata", "invoices"): ("kantata", "invoices", None),
    ("netsuite", "accounts"): ("netsuite", "customer", None),
    ("netsuite", "invoices"): ("netsuite", "transaction", pl.col("type") == "CustInvc"),
    ("netsuite", "payments"): ("netsuite", "transaction", pl.col("type") == "CustPymt"),
    ("netsuite", "payment_applications"): ("netsuite", "nexttransactionlinelink", None),
    ("stripe", "accounts"): ("stripe", "customers", None),
    ("stripe", "invoices"): ("stripe", "invoices", None),
    ("stripe", "payments"): ("stripe", "payment_intents", None),
    ("stripe", "payment_applications"): ("stripe", "invoice_payments", None),
}

pytestmark = pytest.mark.anyio

STREAMS = [(system, stream) for system, cls in PROBES.items() for stream in cls.streams]


def test_every_stream_of_every_probe_has_a_source() -> None:
    assert sorted(STREAMS) == sorted(SOURCES)


_FULL: dict[tuple[str, str], list[Page]] = {}


async def full_read(make_probe: ProbeFactory, system: str, stream: str) -> list[Page]:
    """A full read of the session sandbox, read once per stream for this module's tests."""
    if (system, stream) not in _FULL:
        _FULL[(system, stream)] = await read_all(make_probe(system), stream)
    return _FULL[(system, stream)]


def vendor_ids(estate: Estate, system: str, stream: str) -> list[str]:
    vendor, obj, where = SOURCES[(system, stream)]
    frame = estate.frame(vendor, obj)
    if where is not None:
        frame = frame.filter(where)
    id_col = "Id" if vendor == "salesforce" else "id"
    return sorted(frame[id_col].to_list())


@pytest.mark.parametrize(("system", "stream"), STREAMS)
async def test_a_full_read_returns_exactly_the_vendors_records(
    system: str, stream: str, make_probe: ProbeFactory, estate: Estate
) -> None:
    pages = await full_read(make_probe, system, stream)
    entity = PROBES[system].entities[stream]
    read = rows(pages, entity)

    assert sorted(read["source_id"].to_list()) == vendor_ids(estate, system, stream)
    assert read["source_system"].unique().to_list() == [system]
    assert [q for p in pages for q in p.quarantine] == []
    assert all(p.cursor is not None for p in pages)
    assert read.schema == pl.Schema(_schema(entity))


def _schema(entity: str) -> dict[str, pl.DataType]:
    from store import ENTITIES

    return ENTITIES[entity].polars_schema


@pytest.mark.parametrize(("system", "stream"), STREAMS)
async def test_a_read_from_the_last_cursor_returns_only_the_overlap(
    system: str, stream: str, make_probe: ProbeFactory
) -> None:
    full = await full_read(make_probe, system, stream)
    probe = make_probe(system)

    again = await read_all(probe, stream, full[-1].cursor)

    overlap = sum(p.records for p in again)
    assert overlap < max(5, sum(p.records for p in full) // 10)
    assert again[-1].cursor is not None
    # An unchanged source costs a request or two, not a re-read.
    assert probe.stats.requests <= 4  # with a token and NetSuite's look-ups


@pytest.mark.parametrize(("system", "stream"), STREAMS)
async def test_the_source_count_equals_the_vendors_count(
    system: str, stream: str, make_probe: ProbeFactory, estate: Estate
) -> None:
    probe = make_probe(system)
    count = await probe.count(stream)
    assert (count.system, count.stream, count.entity) == (system, stream, probe.entities[stream])
    assert count.records == len(vendor_ids(estate, system, stream))


@pytest.mark.parametrize(("system", "stream"), STREAMS)
async def test_a_refetched_record_maps_like_the_read_one(
    system: str, stream: str, make_probe: ProbeFactory, estate: Estate
) -> None:
    probe = make_probe(system)
    source_id = vendor_ids(estate, system, stream)[0]
    full = rows(await full_read(make_probe, system, stream), probe.entities[stream])

    page = await probe.refetch(stream, source_id)

    one = page.frames[probe.entities[stream]]
    assert one["source_id"].to_list() == [source_id]
    assert page.cursor is None
    data = [c for c in one.columns if c != "source_modified_at"]
    assert one.select(data).row(0) == full.filter(pl.col("source_id") == source_id).select(
        data
    ).row(0)


@pytest.mark.parametrize("system", sorted(PROBES))
async def test_health_is_ok_against_a_reachable_vendor(
    system: str, make_probe: ProbeFactory
) -> None:
    probe: Probe = make_probe(system)
    health = await probe.health()
    assert health.ok, health.detail
    assert health.system == system
    assert health.latency_seconds >= 0
