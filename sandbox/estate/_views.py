"""Cut the planned timeline at `now`: each vendor object's rows and state as the vendor would show them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import polars as pl

from sandbox.estate._reference import stripe_ids
from sandbox.estate.schema import MONEY, SCHEMAS, STRIPE_API_VERSION, STRIPE_EVENT_RETENTION, UTC_TS

Now = pl.Expr


def _at(col: str, now: Now) -> pl.Expr:
    """The instant in `col` if it has happened by now, else null."""
    return pl.when(pl.col(col) <= now).then(pl.col(col))


def _money(cents: pl.Expr) -> pl.Expr:
    return (cents.cast(pl.Decimal(20, 2)) / 100).cast(MONEY)


def _account(df: pl.DataFrame, now: Now) -> pl.DataFrame:
    won = pl.col("_t_first_win") <= now
    mod = pl.when(won).then(pl.col("_t_first_win")).otherwise(pl.col("CreatedDate"))
    return df.with_columns(
        Type=pl.when(won).then(pl.lit("Customer")).otherwise(pl.lit("Prospect")),
        LastModifiedDate=mod,
        SystemModstamp=mod,
    )


def _opportunity(df: pl.DataFrame, now: Now) -> pl.DataFrame:
    closed = pl.col("_t_close") <= now
    stage = (
        pl.when(closed & pl.col("_won"))
        .then(pl.lit("Closed Won"))
        .when(closed)
        .then(pl.lit("Closed Lost"))
        .when(pl.col("_t3") <= now)
        .then(pl.lit("Negotiation"))
        .when(pl.col("_t2") <= now)
        .then(pl.lit("Proposal"))
        .when(pl.col("_t1") <= now)
        .then(pl.lit("Qualification"))
        .otherwise(pl.lit("Prospecting"))
    )
    mod = pl.max_horizontal(
        "CreatedDate", _at("_t1", now), _at("_t2", now), _at("_t3", now), _at("_t_close", now)
    )
    return df.with_columns(StageName=stage).with_columns(
        IsWon=closed & pl.col("_won"),
        IsClosed=closed,
        Probability=pl.col("StageName").replace_strict(
            {
                "Prospecting": 10.0,
                "Qualification": 20.0,
                "Proposal": 50.0,
                "Negotiation": 75.0,
                "Closed Won": 100.0,
                "Closed Lost": 0.0,
            },
            return_dtype=pl.Float64,
        ),
        LastModifiedDate=mod,
        SystemModstamp=mod,
    )


def _workspaces(df: pl.DataFrame, now: Now) -> pl.DataFrame:
    done = pl.col("_t_done") <= now
    return df.with_columns(
        status_key=pl.when(done).then(pl.lit("completed")).otherwise(pl.lit("active")),
        updated_at=pl.max_horizontal("created_at", _at("_t_done", now)),
    )


def _time_entries(df: pl.DataFrame, now: Now) -> pl.DataFrame:
    invoiced = pl.col("_t_invoiced") <= now
    return df.with_columns(
        approved=pl.col("_t_approved") <= now,
        approved_at=_at("_t_approved", now),
        is_invoiced=invoiced,
        invoice_id=pl.when(invoiced).then(pl.col("_invoice_id")),
        updated_at=pl.max_horizontal(
            "created_at", _at("_t_approved", now), _at("_t_invoiced", now)
        ),
    )


def _stories(df: pl.DataFrame, now: Now) -> pl.DataFrame:
    return df.with_columns(
        state=pl.when(pl.col("_t_completed") <= now)
        .then(pl.lit("completed"))
        .when(pl.col("_t_started") <= now)
        .then(pl.lit("started"))
        .otherwise(pl.lit("not started")),
        completed_at=_at("_t_completed", now),
        invoice_id=pl.when(pl.col("_t_invoiced") <= now).then(pl.col("_invoice_id")),
        updated_at=pl.max_horizontal(
            "created_at", _at("_t_started", now), _at("_t_completed", now), _at("_t_invoiced", now)
        ),
    )


def _kantata_invoices(df: pl.DataFrame, now: Now) -> pl.DataFrame:
    paid = pl.col("_t_paid") <= now
    return df.with_columns(
        status=pl.when(paid).then(pl.lit("accepted payment")).otherwise(pl.lit("new")),
        updated_at=pl.max_horizontal("created_at", _at("_t_paid", now)),
    )


def _job(df: pl.DataFrame, now: Now) -> pl.DataFrame:
    done = pl.col("_t_done") <= now
    return df.with_columns(
        entitystatus=pl.when(done).then(pl.lit("Closed")).otherwise(pl.lit("In Progress")),
        lastmodifieddate=pl.max_horizontal("datecreated", _at("_t_done", now)),
    )


def _applied(now: Now) -> pl.Expr:
    return pl.when(pl.col("_t1") <= now).then(pl.col("_a1")).otherwise(0) + pl.when(
        pl.col("_t2") <= now
    ).then(pl.col("_a2")).otherwise(0)


def _transaction(df: pl.DataFrame, now: Now) -> pl.DataFrame:
    inv = pl.col("type") == "CustInvc"
    unpaid = pl.col("_total_cents") - _applied(now)
    return df.with_columns(
        status=pl.when(~inv)
        .then(pl.lit("C"))
        .when(unpaid <= 0)
        .then(pl.lit("B"))
        .otherwise(pl.lit("A")),
        foreignamountunpaid=pl.when(inv).then(_money(unpaid)),
        lastmodifieddate=pl.max_horizontal("createddate", _at("_t1", now), _at("_t2", now)),
    )


def _stripe_invoices(df: pl.DataFrame, now: Now) -> pl.DataFrame:
    paid = _applied(now)
    voided = pl.col("_t_void") <= now
    full = paid >= pl.col("amount_due")
    paid_at = pl.when(~voided).then(_at("_t_paid", now))
    return df.with_columns(
        amount_paid=paid,
        amount_remaining=pl.col("amount_due") - paid,
        status=pl.when(voided)
        .then(pl.col("_void_kind"))
        .when(full)
        .then(pl.lit("paid"))
        .otherwise(pl.lit("open")),
        status_transitions=pl.struct(
            pl.col("created").alias("finalized_at"),
            pl.when(voided & (pl.col("_void_kind") == "uncollectible"))
            .then(pl.col("_t_void"))
            .alias("marked_uncollectible_at"),
            paid_at.alias("paid_at"),
            pl.when(voided & (pl.col("_void_kind") == "void"))
            .then(pl.col("_t_void"))
            .alias("voided_at"),
        ),
    )


def _currency(df: pl.DataFrame, now_dt: datetime, fx: pl.DataFrame) -> pl.DataFrame:
    latest = (
        fx.filter(pl.col("date") <= now_dt.date())
        .sort("date")
        .group_by("currency")
        .agg(pl.col("usd_per_unit").last(), pl.col("date").last().alias("fx_date"))
    )
    return (
        df.join(latest, left_on="symbol", right_on="currency", how="left", maintain_order="left")
        .with_columns(
            exchangerate=pl.when(pl.col("symbol") == "USD")
            .then(pl.lit(1).cast(pl.Decimal(18, 6)))
            .otherwise(pl.col("usd_per_unit")),
            # the rate is revalued daily, and that is a modification
            lastmodifieddate=pl.max_horizontal(
                "lastmodifieddate",
                pl.col("fx_date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            ),
        )
        .drop("usd_per_unit", "fx_date")
    )


STATEFUL: dict[tuple[str, str], Callable[[pl.DataFrame, Now], pl.DataFrame]] = {
    ("salesforce", "Account"): _account,
    ("salesforce", "Opportunity"): _opportunity,
    ("kantata", "workspaces"): _workspaces,
    ("kantata", "time_entries"): _time_entries,
    ("kantata", "stories"): _stories,
    ("kantata", "invoices"): _kantata_invoices,
    ("netsuite", "job"): _job,
    ("netsuite", "transaction"): _transaction,
    ("stripe", "invoices"): _stripe_invoices,
}


def conform(df: pl.DataFrame, vendor: str, obj: str) -> pl.DataFrame:
    """Select and cast to the schema's columns, in schema order."""
    schema = SCHEMAS[vendor][obj]
    return df.select(
        [
            pl.col(c).cast(t) if c in df.columns else pl.lit(None, t).alias(c)
            for c, t in schema.items()
        ]
    )


def materialise(
    vendor: str, obj: str, master: pl.DataFrame, now_dt: datetime, fx: pl.DataFrame
) -> pl.DataFrame:
    """The rows of one object visible at `now_dt`, with their state at that instant."""
    now = pl.lit(now_dt, dtype=UTC_TS)
    df = master
    if "_visible_at" in df.columns:
        df = df.filter(pl.col("_visible_at") <= now)
    fn = STATEFUL.get((vendor, obj))
    if fn is not None and "_visible_at" in master.columns:
        df = fn(df, now)
    if (vendor, obj) == ("netsuite", "currency"):
        df = _currency(df, now_dt, fx)
    return conform(df, vendor, obj)


EVENT_TYPES = (
    "customer.created",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "payment_intent.created",
    "payment_intent.succeeded",
    "invoice_payment.paid",
    "invoice.updated",  # a part payment (first part)
    "invoice.updated ",  # a part payment (second part); trailing space keeps the code distinct
)


def stripe_events(masters: dict[tuple[str, str], pl.DataFrame], now_dt: datetime) -> pl.DataFrame:
    """The 30-day Stripe events feed derived from the planned timeline (ids stable across calls)."""
    lo = now_dt - STRIPE_EVENT_RETENTION
    now = pl.lit(now_dt, dtype=UTC_TS)
    low = pl.lit(lo, dtype=UTC_TS)

    def window(col: str) -> pl.Expr:
        return (pl.col(col) > low) & (pl.col(col) <= now)

    parts: list[pl.DataFrame] = []

    def add(df: pl.DataFrame, t_col: str, etype: str, obj: str) -> None:
        parts.append(
            df.filter(window(t_col)).select(
                pl.lit(EVENT_TYPES.index(etype), pl.Int64).alias("code"),
                pl.col("_seq").cast(pl.Int64).alias("seq"),
                pl.lit(etype.strip()).alias("type"),
                pl.col("id").alias("data_object_id"),
                pl.lit(obj).alias("data_object_type"),
                pl.col(t_col).alias("created"),
            )
        )

    cus = masters.get(("stripe", "customers"))
    inv = masters.get(("stripe", "invoices"))
    pis = masters.get(("stripe", "payment_intents"))
    ips = masters.get(("stripe", "invoice_payments"))
    if cus is None or inv is None or pis is None or ips is None or "_seq" not in inv.columns:
        return pl.DataFrame(schema=SCHEMAS["stripe"]["events"])
    add(cus, "created", "customer.created", "customer")
    add(inv, "created", "invoice.created", "invoice")
    add(inv, "created", "invoice.finalized", "invoice")
    add(inv, "_t_paid", "invoice.paid", "invoice")
    # a part payment that does not settle the invoice still changes amount_paid
    for n, etype in ((1, "invoice.updated"), (2, "invoice.updated ")):
        partial = (pl.col(f"_a{n}") > 0) & (pl.col(f"_t{n}") != pl.col("_t_paid"))
        add(inv.filter(partial), f"_t{n}", etype, "invoice")
    add(inv.filter(pl.col("_void_kind") == "void"), "_t_void", "invoice.voided", "invoice")
    add(
        inv.filter(pl.col("_void_kind") == "uncollectible"),
        "_t_void",
        "invoice.marked_uncollectible",
        "invoice",
    )
    add(pis, "created", "payment_intent.created", "payment_intent")
    add(pis, "created", "payment_intent.succeeded", "payment_intent")
    add(ips, "created", "invoice_payment.paid", "invoice_payment")
    ev = pl.concat(parts).sort("created", "code", "seq")
    # one id per (event type, object): fold the type code into the sequence
    ids = stripe_ids("evt", ev["seq"].to_numpy() * 16 + ev["code"].to_numpy(), 100)
    return ev.with_columns(
        id=ids,
        object=pl.lit("event"),
        api_version=pl.lit(STRIPE_API_VERSION),
        livemode=pl.lit(False),
        request_id=pl.lit(None, pl.Utf8),
        request_idempotency_key=pl.lit(None, pl.Utf8),
    ).pipe(conform, "stripe", "events")


def window_filter(events: pl.DataFrame, now_dt: datetime) -> pl.DataFrame:
    lo = now_dt - STRIPE_EVENT_RETENTION
    return events.filter((pl.col("created") > lo) & (pl.col("created") <= now_dt))


def overdue_truth(
    transactions: pl.DataFrame, currency: pl.DataFrame, now_dt: datetime
) -> pl.DataFrame:
    """invoice_overdue ground truth derived from the ERP at `now`: open invoices past their due date."""
    today = now_dt.date()
    od = transactions.filter(
        (pl.col("type") == "CustInvc")
        & (pl.col("status") == "A")
        & (pl.col("duedate") < today)
        & (pl.col("foreignamountunpaid") > 0)
    ).join(currency.select(pl.col("id").alias("currency"), "symbol"), on="currency", how="left")
    days = (pl.lit(today) - pl.col("duedate")).dt.total_days()
    return od.select(
        pl.concat_str(pl.lit("GT-invoice_overdue-"), pl.col("id")).alias("defect_id"),
        pl.lit("invoice_overdue").alias("break_type"),
        pl.concat_str(
            pl.lit('[{"vendor":"netsuite","object":"transaction","id":"'),
            pl.col("id"),
            pl.lit('"}]'),
        ).alias("records"),
        pl.col("foreignamountunpaid").cast(pl.Utf8).alias("amount_at_risk"),
        pl.col("symbol").alias("currency"),
        (pl.col("duedate").cast(pl.Datetime("us")).dt.replace_time_zone("UTC") + timedelta(days=1))
        .cast(UTC_TS)
        .alias("injected_at"),
        pl.lit(None, UTC_TS).alias("resolved_at"),
        pl.concat_str(
            pl.lit("Invoice "),
            pl.col("tranid"),
            pl.lit(" is "),
            days.cast(pl.Utf8),
            pl.lit(" days past due"),
        ).alias("detail"),
    )
