"""Malformed vendor records are quarantined with their raw payload and reason; the page goes on.

The sandbox serves what its estate holds, so the records are corrupted there (as a misconfigured
vendor field would be); the probe is unchanged. A second group of tests feeds records whose JSON
types are wrong, which the sandbox cannot produce, through an httpx MockTransport.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from probes import KantataConfig, KantataProbe, StripeConfig, StripeProbe
from sandbox.server import Sandbox
from store import Store
from tests.probes.conftest import FAST, ProbeFactory, read_all, rows

pytestmark = pytest.mark.anyio


async def test_invalid_records_are_quarantined_and_the_rest_is_read(
    private_sandbox: Sandbox, make_probe: ProbeFactory, db: Store
) -> None:
    estate = private_sandbox.estate
    entries = estate.frame("kantata", "time_entries")["id"].to_list()
    bad_currency, no_project = entries[3], entries[7]
    estate.update("kantata", "time_entries", bad_currency, {"currency": "US$"})
    estate.update("kantata", "time_entries", no_project, {"workspace_id": None})

    pages = await read_all(make_probe("kantata", private_sandbox), "time_entries")

    quarantined = {q.source_id: q for p in pages for q in p.quarantine}
    assert set(quarantined) == {bad_currency, no_project}
    assert quarantined[bad_currency].reason == "currency: invalid currency value"
    assert quarantined[no_project].reason == "project_ref: missing"
    raw = orjson.loads(quarantined[bad_currency].raw_payload)
    assert raw["id"] == bad_currency and raw["currency"] == "US$"
    assert all(
        q.source_system == "kantata" and q.stream == "time_entries" for q in quarantined.values()
    )
    good = rows(pages, "time_entries")
    assert good.height == len(entries) - 2
    assert all(p.cursor is not None for p in pages)

    for page in pages:
        db.ingest(page.to_batch())
    kept = db.list_quarantine(source_system="kantata")
    assert sorted(q.source_id for q in kept) == sorted([bad_currency, no_project])
    assert db.count("time_entries") == len(entries) - 2


async def test_an_opportunity_without_a_stage_is_quarantined(
    private_sandbox: Sandbox, make_probe: ProbeFactory
) -> None:
    estate = private_sandbox.estate
    victim = estate.frame("salesforce", "Opportunity")["Id"][5]
    estate.update("salesforce", "Opportunity", victim, {"StageName": None})
    pages = await read_all(make_probe("salesforce", private_sandbox), "opportunities")
    [item] = [q for p in pages for q in p.quarantine]
    assert (item.source_id, item.reason) == (victim, "stage: missing")


def kantata_probe(handler: httpx.MockTransport) -> tuple[KantataProbe, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=handler)
    config = KantataConfig(base_url="https://kantata.test/api/v1", token="t")
    return KantataProbe(client, config, settings=FAST), client


def envelope(records: list[dict[str, object]]) -> dict[str, object]:
    return {
        "count": len(records),
        "meta": {"count": len(records), "page_count": 1, "page_number": 1, "page_size": 200},
        "results": [{"key": "time_entries", "id": r["id"]} for r in records],
        "time_entries": {str(r["id"]): r for r in records},
    }


GOOD = {
    "id": "1",
    "workspace_id": "7",
    "date_performed": "2026-01-02",
    "time_in_minutes": 90,
    "billable": True,
    "rate_in_cents": 15000,
    "currency": "USD",
    "approved": True,
    "approved_at": "2026-01-03T10:00:00+00:00",
    "is_invoiced": False,
    "invoice_id": None,
    "updated_at": "2026-01-03T10:00:00+00:00",
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"time_in_minutes": "ninety"}, "minutes: invalid int value"),
        ({"time_in_minutes": 1.5}, "minutes: invalid int value"),
        ({"time_in_minutes": 2**63}, "minutes: invalid int value"),  # beyond a 64-bit column
        ({"time_in_minutes": True}, "minutes: invalid int value"),
        ({"billable": "yes"}, "billable: invalid bool value"),
        ({"date_performed": "02/30/2026"}, "entry_date: invalid date value"),
        ({"updated_at": "yesterday"}, "source_modified_at: invalid datetime value"),
        ({"rate_in_cents": {"amount": 1}}, "rate_minor: invalid minor value"),
        ({"updated_at": None}, "source_modified_at: missing"),
    ],
)
async def test_each_kind_of_bad_value_has_its_reason(
    change: dict[str, object], reason: str
) -> None:
    bad = {**GOOD, "id": "2", **change}
    body = orjson.dumps(envelope([GOOD, bad]))
    probe, client = kantata_probe(
        httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    )
    async with client:
        [page] = await read_all(probe, "time_entries")
    assert page.frames["time_entries"]["source_id"].to_list() == ["1"]
    [item] = page.quarantine
    assert item.source_id == "2"
    assert item.reason == reason


async def test_a_record_listed_but_missing_from_the_envelope_is_quarantined() -> None:
    body = envelope([GOOD])
    body["results"] = [*body["results"], {"key": "time_entries", "id": "99"}]  # type: ignore[list-item]
    probe, client = kantata_probe(
        httpx.MockTransport(lambda request: httpx.Response(200, content=orjson.dumps(body)))
    )
    async with client:
        [page] = await read_all(probe, "time_entries")
    assert [q.source_id for q in page.quarantine] == ["99"]
    assert page.frames["time_entries"].height == 1


async def test_stripe_money_must_be_integer_minor_units() -> None:
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_1",
        "status": "open",
        "currency": "usd",
        "total": 1000,
        "amount_remaining": 1000,
        "created": 1767225600,
        "metadata": {"netsuite_id": "5"},
    }
    listing = {
        "object": "list",
        "url": "/v1/invoices",
        "has_more": False,
        "data": [invoice, {**invoice, "id": "in_2", "total": 10.5}],
    }
    events = {"object": "list", "url": "/v1/events", "has_more": False, "data": []}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=events if request.url.path == "/v1/events" else listing)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    probe = StripeProbe(
        client, StripeConfig(api_base="https://stripe.test", api_key="sk"), settings=FAST
    )
    async with client:
        [page] = await read_all(probe, "invoices")
    assert [q.source_id for q in page.quarantine] == ["in_2"]
    assert page.quarantine[0].reason == "total_minor: invalid minor value"
