"""Resync writes are idempotent: a lost answer and a repeated call never create a second record.

Each test makes the write with the sandbox's lost-response fault armed (the write is applied,
then the connection closes without an answer), then asserts against the sandbox's own data that
exactly one record exists, and that calling again changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from probes import KantataProbe, NetSuiteProbe, SalesforceProbe, StripeProbe
from sandbox.server import Sandbox
from tests.probes.conftest import ProbeFactory, fired, inject

pytestmark = pytest.mark.anyio


async def test_create_project_after_a_lost_answer_leaves_one_linked_project(
    private_sandbox: Sandbox, make_probe: ProbeFactory
) -> None:
    estate = private_sandbox.estate
    probe = make_probe("kantata", private_sandbox)
    assert isinstance(probe, KantataProbe)
    opportunity = "006RESYNC000000001"
    title = f"Resync {opportunity} - Implementation"
    inject(
        private_sandbox,
        "kantata",
        {"endpoint": "workspaces.create", "kind": "lost_response", "count": 1},
    )

    result = await probe.create_project(
        opportunity, title=title, price_minor=1_250_000, currency="usd", start_date="2026-01-05"
    )

    assert fired(private_sandbox, "kantata") == 1
    workspaces = estate.frame("kantata", "workspaces").filter(pl.col("title") == title)
    assert workspaces.height == 1
    assert result.created and result.source_id == workspaces["id"][0]
    refs = estate.frame("kantata", "external_references").filter(
        pl.col("service_model_ref") == opportunity
    )
    assert refs["subject_id"].to_list() == [result.source_id]

    again = await probe.create_project(
        opportunity, title=title, price_minor=1_250_000, currency="USD"
    )
    assert not again.created and again.source_id == result.source_id
    assert estate.frame("kantata", "workspaces").filter(pl.col("title") == title).height == 1
    assert (
        estate.frame("kantata", "external_references")
        .filter(pl.col("service_model_ref") == opportunity)
        .height
        == 1
    )


async def test_upsert_customer_after_a_lost_answer_leaves_one_customer(
    private_sandbox: Sandbox, make_probe: ProbeFactory
) -> None:
    estate = private_sandbox.estate
    probe = make_probe("netsuite", private_sandbox)
    assert isinstance(probe, NetSuiteProbe)
    account = "001RESYNC000000001"
    inject(
        private_sandbox, "netsuite", {"endpoint": "record.put", "kind": "lost_response", "count": 1}
    )

    result = await probe.upsert_customer(
        account, company_name="Resync Ltd", subsidiary_id="1", currency_id="1"
    )

    assert fired(private_sandbox, "netsuite") == 1
    customers = estate.frame("netsuite", "customer").filter(pl.col("externalid") == account)
    assert customers["id"].to_list() == [result.source_id]
    assert result.created and customers["companyname"].to_list() == ["Resync Ltd"]

    again = await probe.upsert_customer(
        account, company_name="Resync Limited", subsidiary_id="1", currency_id="1"
    )
    customers = estate.frame("netsuite", "customer").filter(pl.col("externalid") == account)
    assert not again.created and customers["id"].to_list() == [result.source_id]
    assert customers["companyname"].to_list() == ["Resync Limited"]


@pytest.mark.parametrize("lost", ["invoices.create", "invoiceitems.create", "invoices.finalize"])
async def test_push_invoice_to_billing_after_a_lost_answer_leaves_one_invoice(
    lost: str, private_sandbox: Sandbox, make_probe: ProbeFactory
) -> None:
    estate = private_sandbox.estate
    probe = make_probe("stripe", private_sandbox)
    assert isinstance(probe, StripeProbe)
    customer = estate.frame("stripe", "customers")["id"][0]
    netsuite_id = f"9{len(lost)}{lost[9:12]}"
    inject(private_sandbox, "stripe", {"endpoint": lost, "kind": "lost_response", "count": 1})

    result = await probe.create_billing_invoice(
        netsuite_id,
        customer=customer,
        amount_minor=480_000,
        currency="USD",
        due_date=datetime(2026, 2, 1, tzinfo=UTC),
    )

    assert fired(private_sandbox, "stripe") == 1
    invoices = estate.frame("stripe", "invoices").filter(
        pl.col("metadata").struct.field("netsuite_id") == netsuite_id
    )
    assert invoices["id"].to_list() == [result.source_id]
    assert invoices["total"].to_list() == [480_000]
    assert invoices["status"].to_list() == ["open"]

    again = await probe.create_billing_invoice(
        netsuite_id, customer=customer, amount_minor=480_000, currency="USD"
    )
    assert not again.created and again.source_id == result.source_id
    assert (
        estate.frame("stripe", "invoices")
        .filter(pl.col("metadata").struct.field("netsuite_id") == netsuite_id)
        .height
        == 1
    )


async def test_salesforce_upsert_by_external_id_after_a_lost_answer_leaves_one_record(
    private_sandbox: Sandbox, make_probe: ProbeFactory
) -> None:
    estate = private_sandbox.estate
    probe = make_probe("salesforce", private_sandbox)
    assert isinstance(probe, SalesforceProbe)
    name = "Resync Holdings"
    inject(
        private_sandbox, "salesforce", {"endpoint": "upsert", "kind": "lost_response", "count": 1}
    )

    result = await probe.upsert("Account", "Name", name, {"CurrencyIsoCode": "USD"})

    assert fired(private_sandbox, "salesforce") == 1
    accounts = estate.frame("salesforce", "Account").filter(pl.col("Name") == name)
    assert accounts["Id"].to_list() == [result.source_id]
    # The retry found the record the lost request had created and updated it.
    assert not result.created


async def test_refetch_returns_the_current_state_after_a_write(
    private_sandbox: Sandbox, make_probe: ProbeFactory
) -> None:
    estate = private_sandbox.estate
    probe = make_probe("kantata", private_sandbox)
    workspace = estate.frame("kantata", "workspaces")["id"][0]
    estate.update("kantata", "workspaces", workspace, {"status_key": "completed"})
    page = await probe.refetch("projects", workspace)
    row = page.frames["projects"].row(0, named=True)
    assert row["status"] == "completed"
    assert row["source_modified_at"] == estate.now
    assert estate.now - timedelta(seconds=1) < row["source_modified_at"]
