"""Vendor -> canonical mapping, checked value by value against the estate the sandbox serves.

Each test reads one stream through its probe and joins the canonical rows to the vendor's own
frame: references (the ids MAPPING.md promises), money in minor units, currencies, statuses.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from sandbox.estate import Estate
from tests.probes.conftest import ProbeFactory, read_all, rows

pytestmark = pytest.mark.anyio


def minor(frame: pl.DataFrame, column: str) -> pl.Series:
    """Decimal major units of the estate as integer minor units (every estate currency has 2)."""
    return (frame[column].cast(pl.Decimal(20, 2)) * 100).cast(pl.Int64)


async def test_opportunities_keep_stage_amount_currency_and_account(
    make_probe: ProbeFactory, estate: Estate
) -> None:
    read = rows(await read_all(make_probe("salesforce"), "opportunities"), "opportunities")
    vendor = estate.frame("salesforce", "Opportunity").sort("Id")
    assert read["source_id"].to_list() == vendor["Id"].to_list()
    assert read["account_ref"].to_list() == vendor["AccountId"].to_list()
    assert read["stage"].to_list() == vendor["StageName"].to_list()
    assert read["is_won"].to_list() == vendor["IsWon"].to_list()
    assert read["amount_minor"].to_list() == minor(vendor, "Amount").to_list()
    assert read["currency"].to_list() == vendor["CurrencyIsoCode"].to_list()
    assert read["close_date"].to_list() == vendor["CloseDate"].to_list()
    assert set(read["billing_model"].unique()) <= {"time_and_materials", "fixed_fee", "retainer"}
    won = read.filter(pl.col("is_won"))
    assert won["won_at"].null_count() == 0
    # won_at is the moment the deal entered Closed Won (its stage history), not the close day.
    entered = (
        estate.frame("salesforce", "OpportunityHistory")
        .filter(pl.col("StageName") == "Closed Won")
        .group_by("OpportunityId")
        .agg(pl.col("CreatedDate").max().dt.truncate("1s"))
    )
    joined = won.join(entered, left_on="source_id", right_on="OpportunityId", how="left")
    assert joined["won_at"].to_list() == joined["CreatedDate"].to_list()
    assert read.filter(~pl.col("is_won"))["won_at"].null_count() == read.height - won.height
    assert (
        read["source_modified_at"].to_list()
        == vendor["SystemModstamp"].dt.truncate("1ms").to_list()
    )


async def test_projects_point_at_the_opportunity_of_their_external_reference(
    make_probe: ProbeFactory, estate: Estate
) -> None:
    read = rows(await read_all(make_probe("kantata"), "projects"), "projects")
    refs = estate.frame("kantata", "external_references").filter(
        (pl.col("subject_type") == "Workspace") & (pl.col("service_model") == "Opportunity")
    )
    expected = (
        estate.frame("kantata", "workspaces")
        .join(refs.select("subject_id", "service_model_ref"), left_on="id", right_on="subject_id")
        .sort("id")
    )
    joined = read.join(expected, left_on="source_id", right_on="id")
    assert joined.height == expected.height > 0
    assert joined["opportunity_ref"].to_list() == joined["service_model_ref"].to_list()
    assert joined["budget_minor"].to_list() == joined["price_in_cents"].to_list()
    assert joined["status"].to_list() == joined["status_key"].to_list()
    assert (joined["currency"] == joined["currency_right"]).all()


async def test_time_entries_keep_minutes_rate_approval_and_psa_invoice(
    make_probe: ProbeFactory, estate: Estate
) -> None:
    read = rows(await read_all(make_probe("kantata"), "time_entries"), "time_entries")
    vendor = estate.frame("kantata", "time_entries")
    joined = read.join(vendor, left_on="source_id", right_on="id")
    assert joined.height == vendor.height
    assert (joined["project_ref"] == joined["workspace_id"]).all()
    assert (joined["minutes"] == joined["time_in_minutes"]).all()
    assert (joined["rate_minor"] == joined["rate_in_cents"]).all()
    assert (joined["entry_date"] == joined["date_performed"]).all()
    assert joined["invoice_ref"].eq_missing(joined["invoice_id"]).all()
    expected_status = (
        pl.when(pl.col("is_invoiced"))
        .then(pl.lit("invoiced"))
        .when(pl.col("approved"))
        .then(pl.lit("approved"))
        .otherwise(pl.lit("submitted"))
    )
    assert (joined["status"] == joined.select(expected_status).to_series()).all()
    assert joined["approved_at"].eq_missing(joined["approved_at_right"]).all()


async def test_erp_invoices_carry_customer_project_psa_invoice_and_amounts(
    make_probe: ProbeFactory, estate: Estate
) -> None:
    read = rows(await read_all(make_probe("netsuite"), "invoices"), "invoices")
    currency = estate.frame("netsuite", "currency").select(
        pl.col("id").alias("currency"), pl.col("symbol")
    )
    jobs = estate.frame("netsuite", "job").select(
        pl.col("id").alias("job"), pl.col("externalid").alias("workspace")
    )
    vendor = (
        estate.frame("netsuite", "transaction")
        .filter(pl.col("type") == "CustInvc")
        .join(currency, on="currency", how="left")
        .join(jobs, on="job", how="left")
        .sort("id")
    )
    assert read["source_id"].to_list() == vendor["id"].to_list()
    assert read["customer_ref"].to_list() == vendor["entity"].to_list()
    assert read["project_ref"].to_list() == vendor["workspace"].to_list()
    assert read["psa_invoice_ref"].to_list() == vendor["externalid"].to_list()
    assert read["total_minor"].to_list() == minor(vendor, "foreigntotal").to_list()
    assert read["amount_remaining_minor"].to_list() == (
        minor(vendor, "foreignamountunpaid").to_list()
    )
    assert read["currency"].to_list() == vendor["symbol"].to_list()
    assert read["issued_on"].to_list() == vendor["trandate"].to_list()
    status = {"A": "open", "B": "paid", "V": "void"}
    assert read["status"].to_list() == [status[s] for s in vendor["status"]]


async def test_billing_invoices_name_their_erp_twin(
    make_probe: ProbeFactory, estate: Estate
) -> None:
    read = rows(await read_all(make_probe("stripe"), "invoices"), "invoices")
    vendor = estate.frame("stripe", "invoices").sort("id")
    assert read["source_id"].to_list() == vendor["id"].to_list()
    assert read["twin_ref"].to_list() == vendor["metadata"].struct.field("netsuite_id").to_list()
    assert read["total_minor"].to_list() == vendor["total"].to_list()
    assert read["amount_remaining_minor"].to_list() == vendor["amount_remaining"].to_list()
    assert read["currency"].to_list() == vendor["currency"].str.to_uppercase().to_list()
    assert read["status"].to_list() == vendor["status"].to_list()
    assert read["customer_ref"].to_list() == vendor["customer"].to_list()


async def test_payment_applications_link_payment_and_invoice_in_both_systems(
    make_probe: ProbeFactory, estate: Estate
) -> None:
    ns = rows(
        await read_all(make_probe("netsuite"), "payment_applications"), "payment_applications"
    )
    links = estate.frame("netsuite", "nexttransactionlinelink").sort("id")
    assert ns["payment_ref"].to_list() == links["nextdoc"].to_list()
    assert ns["invoice_ref"].to_list() == links["previousdoc"].to_list()
    assert ns["amount_minor"].to_list() == minor(links, "foreignamount").to_list()
    invoice_currency = (
        links.join(
            estate.frame("netsuite", "transaction").select(
                pl.col("id").alias("previousdoc"), "currency"
            ),
            on="previousdoc",
        )
        .join(
            estate.frame("netsuite", "currency").select(pl.col("id").alias("currency"), "symbol"),
            on="currency",
        )
        .sort("id")
    )
    assert ns["currency"].to_list() == invoice_currency["symbol"].to_list()

    st = rows(await read_all(make_probe("stripe"), "payment_applications"), "payment_applications")
    pays = estate.frame("stripe", "invoice_payments").sort("id")
    assert st["payment_ref"].to_list() == pays["payment"].struct.field("payment_intent").to_list()
    assert st["invoice_ref"].to_list() == pays["invoice"].to_list()
    assert st["amount_minor"].to_list() == pays["amount_paid"].to_list()


async def test_money_sums_per_currency_equal_the_vendors(
    make_probe: ProbeFactory, estate: Estate
) -> None:
    payments = rows(await read_all(make_probe("netsuite"), "payments"), "payments")
    vendor = (
        estate.frame("netsuite", "transaction")
        .filter(pl.col("type") == "CustPymt")
        .join(
            estate.frame("netsuite", "currency").select(pl.col("id").alias("currency"), "symbol"),
            on="currency",
        )
    )
    ours = dict(payments.group_by("currency").agg(pl.col("amount_minor").sum()).iter_rows())
    theirs = {
        symbol: int(Decimal(str(total)) * 100)
        for symbol, total in vendor.group_by("symbol").agg(pl.col("foreigntotal").sum()).iter_rows()
    }
    assert ours == theirs
    unapplied = payments["unapplied_minor"].sum()
    assert unapplied == int(
        Decimal(str(vendor["foreignpaymentamountunused"].fill_null(0).sum())) * 100
    )


async def test_accounts_from_crm_erp_and_billing_carry_each_others_ids(
    make_probe: ProbeFactory, estate: Estate
) -> None:
    crm = rows(await read_all(make_probe("salesforce"), "accounts"), "accounts")
    erp = rows(await read_all(make_probe("netsuite"), "accounts"), "accounts")
    billing = rows(await read_all(make_probe("stripe"), "accounts"), "accounts")
    assert (crm["crm_account_id"] == crm["source_id"]).all()
    customers = estate.frame("netsuite", "customer").sort("id")
    assert erp["crm_account_id"].to_list() == customers["externalid"].to_list()
    assert (erp["erp_customer_id"] == erp["source_id"]).all()
    stripe_customers = estate.frame("stripe", "customers").sort("id")
    assert billing["erp_customer_id"].to_list() == (
        stripe_customers["metadata"].struct.field("netsuite_id").to_list()
    )
    assert set(erp["legal_entity"].unique()) <= set(
        estate.frame("netsuite", "subsidiary")["name"].to_list()
    )
