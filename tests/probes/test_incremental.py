"""Incremental reads against a sandbox whose clock moves: only changes come back, nothing is missed.

Pages go into a real store (SQLite and PostgreSQL) with ``Page.to_batch``, so the cursor that
comes back on the next read is the one the store kept with the records it covers.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from probes import Page
from sandbox.server import Sandbox
from store import Store
from tests.probes.conftest import ProbeFactory, read_all, rows

pytestmark = pytest.mark.anyio


def ingest(db: Store, pages: list[Page]) -> int:
    written = 0
    for page in pages:
        written += db.ingest(page.to_batch()).written
    return written


@pytest.mark.parametrize(
    ("system", "stream", "vendor", "obj", "stamp"),
    [
        ("salesforce", "opportunities", "salesforce", "Opportunity", "SystemModstamp"),
        ("kantata", "time_entries", "kantata", "time_entries", "updated_at"),
        ("netsuite", "invoices", "netsuite", "transaction", "lastmodifieddate"),
    ],
)
async def test_after_the_clock_moves_only_changed_records_are_read(
    system: str,
    stream: str,
    vendor: str,
    obj: str,
    stamp: str,
    private_sandbox: Sandbox,
    make_probe: ProbeFactory,
    db: Store,
) -> None:
    estate = private_sandbox.estate
    full = await read_all(make_probe(system, private_sandbox), stream)
    ingest(db, full)
    cursor = db.read_cursor(system, stream)
    assert cursor == full[-1].cursor
    before = estate.now

    estate.advance(timedelta(days=3))
    probe = make_probe(system, private_sandbox)
    changes = await read_all(probe, stream, cursor)

    changed = estate.frame(vendor, obj).filter(pl.col(stamp) > before)
    if vendor == "netsuite":
        changed = changed.filter(pl.col("type") == "CustInvc")
    id_col = "Id" if vendor == "salesforce" else "id"
    read = rows(changes, probe.entities[stream])
    assert changed.height > 0
    assert set(changed[id_col]) <= set(read["source_id"])
    # Only the changes and the lookback overlap, not the whole stream again.
    assert read.height < changed.height + 50
    # token (NetSuite, Salesforce), the page(s), NetSuite's currency and job look-ups
    assert probe.stats.requests <= 4 + changed.height // 100

    ingest(db, changes)
    stored = db.read_frame(probe.entities[stream], columns=["source_id"])
    ids = estate.frame(vendor, obj)
    if vendor == "netsuite":
        ids = ids.filter(pl.col("type") == "CustInvc")
    assert sorted(stored["source_id"]) == sorted(ids[id_col])
    history = db.read_history(entity=probe.entities[stream])
    assert history.height > 0


async def test_a_deleted_salesforce_record_arrives_deleted(
    private_sandbox: Sandbox, make_probe: ProbeFactory, db: Store
) -> None:
    estate = private_sandbox.estate
    full = await read_all(make_probe("salesforce", private_sandbox), "opportunities")
    ingest(db, full)
    victim = estate.frame("salesforce", "Opportunity")["Id"][0]
    estate.update("salesforce", "Opportunity", victim, {"IsDeleted": True})

    changes = await read_all(
        make_probe("salesforce", private_sandbox),
        "opportunities",
        db.read_cursor("salesforce", "opportunities"),
    )
    read = rows(changes, "opportunities").filter(pl.col("source_id") == victim)
    assert read["is_deleted"].to_list() == [True]
    ingest(db, changes)
    assert victim not in db.read_frame("opportunities")["source_id"].to_list()
    assert victim in db.read_frame("opportunities", include_deleted=True)["source_id"].to_list()


async def test_stripe_changes_come_from_events_and_an_old_cursor_relists(
    private_sandbox: Sandbox, make_probe: ProbeFactory, db: Store
) -> None:
    estate = private_sandbox.estate
    full = await read_all(make_probe("stripe", private_sandbox), "invoices")
    ingest(db, full)
    cursor = db.read_cursor("stripe", "invoices")
    assert cursor is not None and '"phase":"events"' in cursor

    estate.advance(timedelta(days=3))
    probe = make_probe("stripe", private_sandbox)
    changes = await read_all(probe, "invoices", cursor)
    ingest(db, changes)
    listed = probe.stats.requests
    assert listed <= 4  # the clock check and one or two pages of events
    stored = db.read_frame("invoices", columns=["source_id", "status", "total_minor"])
    vendor = estate.frame("stripe", "invoices").sort("id")
    assert stored["source_id"].to_list() == vendor["id"].to_list()
    assert stored["status"].to_list() == vendor["status"].to_list()
    assert stored["total_minor"].to_list() == vendor["total"].to_list()

    # Past Stripe's 30-day event horizon the cursor is not trusted: everything is listed again.
    estate.advance(timedelta(days=40))
    relist = make_probe("stripe", private_sandbox)
    again = await read_all(relist, "invoices", db.read_cursor("stripe", "invoices"))
    assert sum(p.records for p in again) == estate.frame("stripe", "invoices").height
    assert '"phase":"events"' in (again[-1].cursor or "")


async def test_reading_the_same_changes_twice_writes_nothing_new(
    private_sandbox: Sandbox, make_probe: ProbeFactory, db: Store
) -> None:
    pages = await read_all(make_probe("kantata", private_sandbox), "projects")
    assert ingest(db, pages) > 0
    again = await read_all(make_probe("kantata", private_sandbox), "projects")
    assert ingest(db, again) == 0
    assert db.count("projects") == private_sandbox.estate.frame("kantata", "workspaces").height
