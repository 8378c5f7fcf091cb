"""Independent detectors: find each break type in vendor frames alone, to verify the ground truth.

`detect(frames, now)` looks only at vendor data (the frames an API would serve, keyed by
(vendor, object)) and returns, per break type, the keys of the records it finds broken;
`truth_keys(ground_truth)` maps the ground truth to the same keys. In a generated estate the two
agree exactly: every injected defect is visible, and the clean data shows no other breaks.
The rules are the estate's conventions (FORMAT.md, "Hand-off rules"); a reconciler may be stricter
or looser, but it must at least see these.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import orjson
import polars as pl

from sandbox.estate.schema import GRACE

Frames = Mapping[tuple[str, str], pl.DataFrame]

INVOICE_RUN_DAY = 11
"""T&M time of month m is invoiced on day 11 of month m+1 at 10:00 UTC."""

DETECTABLE = (
    "won_deal_without_project",
    "project_without_deal",
    "project_value_mismatch",
    "approved_time_not_invoiced",
    "completed_milestone_not_invoiced",
    "invoice_amount_mismatch",
    "invoice_missing_in_billing",
    "invoice_missing_in_erp",
    "invoice_status_mismatch",
    "invoice_overdue",
    "duplicate_payment",
    "unapplied_cash",
    "currency_mismatch",
    "customer_missing_in_erp",
    "customer_duplicated_in_erp",
)
"""Every break type but stale_source, which is an API outage, not data (see source_available)."""


def _ids(df: pl.DataFrame, col: str) -> set[str]:
    return set(df.get_column(col).to_list())


def _won_at(f: Frames) -> pl.DataFrame:
    """Opportunity Id -> when it entered Closed Won (from the stage history)."""
    opp = f["salesforce", "Opportunity"].filter(pl.col("IsWon"))
    hist = f["salesforce", "OpportunityHistory"].filter(pl.col("StageName") == "Closed Won")
    won = hist.group_by("OpportunityId").agg(pl.col("CreatedDate").min().alias("won_at"))
    return opp.join(won, left_on="Id", right_on="OpportunityId", how="inner")


def _ws_opp(f: Frames) -> pl.DataFrame:
    xref = f["kantata", "external_references"].filter(
        (pl.col("subject_type") == "Workspace") & (pl.col("service_model") == "Opportunity")
    )
    return f["kantata", "workspaces"].join(
        xref.select(pl.col("subject_id").alias("id"), pl.col("service_model_ref").alias("opp")),
        on="id",
        how="inner",
    )


def _invoices(f: Frames) -> pl.DataFrame:
    return f["netsuite", "transaction"].filter(pl.col("type") == "CustInvc")


def _payments(f: Frames) -> pl.DataFrame:
    return f["netsuite", "transaction"].filter(pl.col("type") == "CustPymt")


def _stripe_twins(f: Frames) -> pl.DataFrame:
    return f["stripe", "invoices"].with_columns(ns=pl.col("metadata").struct.field("netsuite_id"))


def _duplicates(f: Frames) -> pl.DataFrame:
    """Payments repeating an earlier one's payer, amount and remittance reference."""
    return (
        _payments(f)
        .sort("createddate", "id")
        .with_columns(n=pl.int_range(pl.len()).over("entity", "foreigntotal", "memo"))
        .filter(pl.col("n") > 0)
    )


def detect(f: Frames, now: datetime) -> dict[str, set[str]]:
    """Keys of the broken records per break type, found from vendor frames alone."""
    out: dict[str, set[str]] = {}
    ws_opp = _ws_opp(f)
    opp = f["salesforce", "Opportunity"]
    won = _won_at(f)

    old_won = won.filter(pl.col("won_at") <= now - GRACE["won_deal_without_project"])
    out["won_deal_without_project"] = _ids(
        old_won.join(ws_opp.select(pl.col("opp").alias("Id")), on="Id", how="anti"), "Id"
    )
    out["project_without_deal"] = _ids(
        ws_opp.join(opp.select(pl.col("Id").alias("opp")), on="opp", how="anti"), "id"
    )
    linked = ws_opp.join(
        opp.select(pl.col("Id").alias("opp"), "Amount", "CurrencyIsoCode"), on="opp", how="inner"
    )
    out["project_value_mismatch"] = _ids(
        linked.filter(
            (pl.col("currency") == pl.col("CurrencyIsoCode"))
            & ((pl.col("Amount") * 100).cast(pl.Int64) != pl.col("price_in_cents"))
        ),
        "id",
    )
    cur_ws = linked.filter(pl.col("currency") != pl.col("CurrencyIsoCode"))

    te = f["kantata", "time_entries"]
    run = (
        pl.col("date_performed")
        .dt.month_start()
        .dt.offset_by("1mo")
        .dt.offset_by(f"{INVOICE_RUN_DAY - 1}d")
    ).cast(pl.Datetime("us")).dt.replace_time_zone("UTC") + timedelta(hours=10)
    out["approved_time_not_invoiced"] = _ids(
        te.filter(
            pl.col("billable") & pl.col("approved") & pl.col("invoice_id").is_null() & (run <= now)
        ),
        "id",
    )
    st = f["kantata", "stories"]
    out["completed_milestone_not_invoiced"] = _ids(
        st.filter(
            (pl.col("story_type") == "milestone")
            & (pl.col("state") == "completed")
            & pl.col("invoice_id").is_null()
            & (pl.col("completed_at") <= now - GRACE["completed_milestone_not_invoiced"])
        ),
        "id",
    )

    inv = _invoices(f)
    kinv = f["kantata", "invoices"]
    out["invoice_amount_mismatch"] = _ids(
        inv.join(
            kinv.select(pl.col("id").alias("externalid"), "balance_in_cents"), on="externalid"
        ).filter((pl.col("foreigntotal") * 100).cast(pl.Int64) != pl.col("balance_in_cents")),
        "id",
    )
    twins = _stripe_twins(f)
    out["invoice_missing_in_billing"] = _ids(
        inv.filter(pl.col("createddate") <= now - GRACE["invoice_missing_in_billing"]).join(
            twins.select(pl.col("ns").alias("id")).drop_nulls(), on="id", how="anti"
        ),
        "id",
    )
    out["invoice_missing_in_erp"] = _ids(
        kinv.filter(pl.col("created_at") <= now - GRACE["invoice_missing_in_erp"]).join(
            inv.select(pl.col("externalid").alias("id")).drop_nulls(), on="id", how="anti"
        ),
        "id",
    )
    pair = inv.join(twins.select(pl.col("ns").alias("id"), pl.col("status").alias("s_status"),
                                 pl.col("currency").alias("s_cur")), on="id", how="inner")  # fmt: skip
    expected = pl.col("status").replace_strict(
        {"A": "open", "B": "paid", "V": "void"}, default=None
    )
    out["invoice_status_mismatch"] = _ids(pair.filter(expected != pl.col("s_status")), "id")
    out["invoice_overdue"] = _ids(
        inv.filter(
            (pl.col("status") == "A")
            & (pl.col("duedate") < now.date())
            & (pl.col("foreignamountunpaid") > 0)
        ),
        "id",
    )
    dups = _duplicates(f)
    out["duplicate_payment"] = _ids(dups, "id")
    out["unapplied_cash"] = _ids(
        _payments(f)
        .filter(pl.col("foreignpaymentamountunused") > 0)
        .join(dups.select("id"), on="id", how="anti"),
        "id",
    )
    symbols = f["netsuite", "currency"].select(pl.col("id").alias("currency"), "symbol")
    cur_inv = pair.join(symbols, on="currency", how="left").filter(
        pl.col("symbol").str.to_lowercase() != pl.col("s_cur")
    )
    out["currency_mismatch"] = _ids(cur_ws, "id") | _ids(cur_inv, "id")

    acc_won = old_won.filter(pl.col("won_at") <= now - GRACE["customer_missing_in_erp"])
    cust = f["netsuite", "customer"]
    out["customer_missing_in_erp"] = _ids(
        acc_won.select("AccountId")
        .unique()
        .join(
            cust.select(pl.col("externalid").alias("AccountId")).drop_nulls(),
            on="AccountId",
            how="anti",
        ),
        "AccountId",
    )
    out["customer_duplicated_in_erp"] = _ids(
        cust.sort("datecreated", "id")
        .with_columns(n=pl.int_range(pl.len()).over(pl.col("companyname").str.to_lowercase()))
        .filter(pl.col("n") > 0),
        "id",
    )
    return out


_KEY_RECORD = {
    "project_value_mismatch": 1,
    "invoice_amount_mismatch": 1,
    "customer_duplicated_in_erp": 2,
}


def key_of(break_type: str, records: str) -> str:
    """The key `detect` reports a ground-truth row under (one id from its records JSON)."""
    recs = orjson.loads(records)
    if break_type == "currency_mismatch":
        idx = 1 if recs[0]["vendor"] == "salesforce" else 0
    else:
        idx = _KEY_RECORD.get(break_type, 0)
    return str(recs[idx]["id"])


def truth_keys(ground_truth: pl.DataFrame) -> dict[str, set[str]]:
    """The ground truth's open defects keyed like `detect` keys them."""
    out: dict[str, set[str]] = {t: set() for t in DETECTABLE}
    open_rows = ground_truth.filter(pl.col("resolved_at").is_null())
    for btype, records in open_rows.select("break_type", "records").iter_rows():
        if btype in out:
            out[btype].add(key_of(btype, records))
    return out
