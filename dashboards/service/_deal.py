"""One deal's chain across CRM, PSA, ERP and billing: its records with vendor ids, a timeline of
its events, its breaks and their history.

The chain is followed by the references the store keeps (ids of the records pointed at): the
opportunity; its projects (``opportunity_ref``); their milestones and time (``project_ref``); the
invoices of the deal or its projects in any system, then their twins (``twin_ref``,
``psa_invoice_ref``); the payment applications of the ERP invoices and their payments. These are
targeted reads of one deal, not the reconciler's whole-estate linking.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

import store
from dashboards.service._auth import User, require

RECORD_SCHEMA: dict[str, pl.DataType] = {
    "system": pl.String(),
    "entity": pl.String(),
    "source_id": pl.String(),
    "what": pl.String(),
    "status": pl.String(),
    "amount_minor": pl.Int64(),
    "currency": pl.String(),
    "source_modified_at": pl.Datetime("us", "UTC"),
    "last_seen_at": pl.Datetime("us", "UTC"),
}
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "at": pl.Datetime("us", "UTC"),
    "system": pl.String(),
    "entity": pl.String(),
    "source_id": pl.String(),
    "event": pl.String(),
}


@dataclass(frozen=True)
class DealView:
    """A deal's records (RECORD_SCHEMA), events oldest first (EVENT_SCHEMA), breaks, transitions."""

    opportunity_id: str
    name: str | None
    records: pl.DataFrame
    events: pl.DataFrame
    breaks: pl.DataFrame
    transitions: pl.DataFrame


def _midnight(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def find_deal(db: store.Store, user: User, text: str) -> str | None:
    """The opportunity id a deal, project or invoice id (or invoice number) belongs to."""
    require(user, "read")
    wanted = text.strip()
    if not wanted:
        return None
    with db.begin() as conn:
        deals = store.read_records_where(conn, store.OPPORTUNITY, {"source_id": [wanted]})
        if deals.height:
            return str(deals["source_id"][0])
        projects = store.read_records_where(conn, store.PROJECT, {"source_id": [wanted]})
        invoices = store.read_records_where(
            conn, store.INVOICE, {"source_id": [wanted], "number": [wanted]}
        )
        for row in invoices.iter_rows(named=True):
            if row["opportunity_ref"]:
                return str(row["opportunity_ref"])
            twins = [r for r in (row["twin_ref"], row["psa_invoice_ref"]) if r]
            if twins:
                more = store.read_records_where(conn, store.INVOICE, {"source_id": twins})
                refs = more.get_column("opportunity_ref").drop_nulls()
                if refs.len():
                    return str(refs[0])
        project_refs = [
            *projects.get_column("source_id").to_list(),
            *invoices.get_column("project_ref").drop_nulls().to_list(),
        ]
        if project_refs:
            owners = store.read_records_where(conn, store.PROJECT, {"source_id": project_refs})
            refs = owners.get_column("opportunity_ref").drop_nulls()
            if refs.len():
                return str(refs[0])
    return None


def _records(entity: str, frame: pl.DataFrame, what: pl.Expr, status: pl.Expr,
             amount: pl.Expr) -> pl.DataFrame:  # fmt: skip
    if frame.is_empty():
        return pl.DataFrame(schema=RECORD_SCHEMA)
    return frame.select(
        pl.col("source_system").alias("system"),
        pl.lit(entity).alias("entity"),
        "source_id",
        what.cast(pl.String).alias("what"),
        status.cast(pl.String).alias("status"),
        amount.cast(pl.Int64).alias("amount_minor"),
        pl.col("currency"),
        "source_modified_at",
        "last_seen_at",
    )


def _events(frame: pl.DataFrame, entity: str, items: list[tuple[pl.Expr, str]]) -> list[pl.DataFrame]:  # fmt: skip
    out: list[pl.DataFrame] = []
    if frame.is_empty():
        return out
    for at, label in items:
        out.append(
            frame.select(
                at.alias("at"),
                pl.col("source_system").alias("system"),
                pl.lit(entity).alias("entity"),
                "source_id",
                pl.lit(label).alias("event"),
            ).filter(pl.col("at").is_not_null())
        )
    return out


def deal_view(db: store.Store, user: User, opportunity_id: str) -> DealView | None:
    """Everything known about one deal, or None when no opportunity has that id."""
    require(user, "read")
    with db.begin() as conn:
        deals = store.read_records_where(conn, store.OPPORTUNITY, {"source_id": [opportunity_id]})
        if deals.is_empty():
            return None
        account_refs = deals.get_column("account_ref").drop_nulls().to_list()
        accounts = store.read_records_where(
            conn, store.ACCOUNT, {"source_id": account_refs, "crm_account_id": account_refs}
        )
        projects = store.read_records_where(
            conn, store.PROJECT, {"opportunity_ref": [opportunity_id]}
        )
        project_ids = projects.get_column("source_id").to_list()
        milestones = store.read_records_where(conn, store.MILESTONE, {"project_ref": project_ids})
        time_entries = store.read_records_where(
            conn, store.TIME_ENTRY, {"project_ref": project_ids}
        )
        invoices = store.read_records_where(
            conn, store.INVOICE, {"opportunity_ref": [opportunity_id], "project_ref": project_ids}
        )
        ids = invoices.get_column("source_id").to_list()
        refs = [
            *invoices.get_column("twin_ref").drop_nulls().to_list(),
            *invoices.get_column("psa_invoice_ref").drop_nulls().to_list(),
        ]
        if ids or refs:
            twins = store.read_records_where(
                conn,
                store.INVOICE,
                {"twin_ref": ids, "psa_invoice_ref": ids, "source_id": refs},
            )
            invoices = pl.concat([invoices, twins]).unique(["source_system", "source_id"])
            invoices = invoices.sort("source_system", "source_id")
        invoice_ids = invoices.get_column("source_id").to_list()
        applications = store.read_records_where(
            conn, store.PAYMENT_APPLICATION, {"invoice_ref": invoice_ids}
        )
        payments = store.read_records_where(
            conn,
            store.PAYMENT,
            {"source_id": applications.get_column("payment_ref").drop_nulls().to_list()},
        )
        history = pl.concat(
            [
                store.read_record_history(
                    conn, e, list(zip(f["source_system"], f["source_id"], strict=True))
                )
                for e, f in ((store.OPPORTUNITY, deals), (store.PROJECT, projects),
                             (store.MILESTONE, milestones), (store.INVOICE, invoices),
                             (store.PAYMENT, payments))
            ]
        )  # fmt: skip
    deal = deals.row(0, named=True)

    records = pl.concat(
        [
            _records("opportunity", deals, pl.col("name"), pl.col("stage"), pl.col("amount_minor")),
            _records("account", accounts, pl.col("name"), pl.col("legal_entity"), pl.lit(None)),
            _records("project", projects, pl.col("name"), pl.col("status"), pl.col("budget_minor")),
            _records("milestone", milestones, pl.col("name"), pl.col("status"),
                     pl.col("amount_minor")),
            _records("invoice", invoices, pl.col("number"), pl.col("status"),
                     pl.col("total_minor")),
            _records("payment", payments, pl.col("reference"), pl.col("status"),
                     pl.col("amount_minor")),
            _records("payment_application", applications, pl.col("payment_ref"), pl.lit("applied"),
                     pl.col("amount_minor")),
        ]
    )  # fmt: skip
    if not time_entries.is_empty():
        per_project = time_entries.group_by("source_system", "project_ref", "currency").agg(
            pl.len().alias("entries"),
            (pl.col("minutes").sum() / 60).round(1).alias("hours"),
            (pl.col("minutes") * pl.col("rate_minor") / 60).sum().round(0).alias("value"),
            pl.col("source_modified_at").max(),
            pl.col("last_seen_at").max(),
            pl.col("invoice_ref").is_not_null().sum().alias("invoiced"),
        )
        records = pl.concat(
            [
                records,
                per_project.select(
                    pl.col("source_system").alias("system"),
                    pl.lit("time_entries").alias("entity"),
                    pl.concat_str(pl.lit("project "), "project_ref").alias("source_id"),
                    pl.format("{} entries, {} h", "entries", "hours").alias("what"),
                    pl.format("{} invoiced", "invoiced").alias("status"),
                    pl.col("value").cast(pl.Int64).alias("amount_minor"),
                    "currency",
                    "source_modified_at",
                    "last_seen_at",
                ),
            ]
        )

    events = [
        *_events(deals, "opportunity", [(pl.col("created_at_source"), "created"),
                                         (pl.col("won_at"), "won")]),
        *_events(projects, "project", [(pl.col("created_at_source"), "project created"),
                                       (pl.col("activated_at"), "project activated")]),
        *_events(milestones, "milestone", [(pl.col("completed_at"), "milestone completed")]),
        *_events(invoices, "invoice", [(_midnight("issued_on"), "invoice issued"),
                                       (_midnight("due_on"), "invoice due")]),
        *_events(payments, "payment", [(pl.col("received_at"), "payment received")]),
        *_events(applications, "payment_application", [(pl.col("applied_at"), "payment applied")]),
    ]  # fmt: skip
    if not time_entries.is_empty():
        first = time_entries.group_by("source_system", "project_ref").agg(
            pl.col("approved_at").min()
        )
        events.append(
            first.select(
                pl.col("approved_at").alias("at"),
                pl.col("source_system").alias("system"),
                pl.lit("time_entries").alias("entity"),
                pl.col("project_ref").alias("source_id"),
                pl.lit("first time approved").alias("event"),
            ).filter(pl.col("at").is_not_null())
        )
    if not history.is_empty():
        events.append(
            history.select(
                pl.col("source_modified_at").alias("at"),
                pl.col("source_system").alias("system"),
                pl.col("entity").str.strip_suffix("s").alias("entity"),
                "source_id",
                pl.format(
                    "{}: {} -> {}",
                    "field",
                    pl.col("old_value").fill_null("(none)"),
                    pl.col("new_value").fill_null("(none)"),
                ).alias("event"),
            )
        )
    timeline = (
        pl.concat([e.cast(EVENT_SCHEMA) for e in events])  # type: ignore[arg-type]
        if events
        else pl.DataFrame(schema=EVENT_SCHEMA)
    ).sort("at", "system", "source_id", maintain_order=True)

    named = (
        set(records.get_column("source_id").to_list())
        | set(project_ids)
        | set(time_entries.get_column("source_id").to_list())
    )
    with db.begin() as conn:
        deal_breaks = store.read_breaks_mentioning(conn, sorted(named))
        transitions = store.read_break_transitions_of(
            conn, deal_breaks.get_column("break_id").to_list()
        )
    return DealView(
        opportunity_id=opportunity_id,
        name=deal.get("name"),
        records=records.cast(RECORD_SCHEMA),  # type: ignore[arg-type]
        events=timeline,
        breaks=deal_breaks,
        transitions=transitions,
    )


_DEAL_ID = r'"entity":"opportunities","id":"([^"]+)"'


def deals_with_breaks(register: pl.DataFrame, *, limit: int = 200) -> list[str]:
    """Opportunity ids named by active breaks, the most valuable at risk first (a pick list)."""
    active = register.filter(pl.col("status").is_in(["new", "open", "reopened"]))
    ids = (
        active.select(
            pl.col("records").str.extract_all(_DEAL_ID).alias("found"),
            pl.col("amount_reporting_minor").fill_null(0),
        )
        .explode("found")
        .drop_nulls("found")
        .select(pl.col("found").str.extract(_DEAL_ID).alias("deal"), "amount_reporting_minor")
        .group_by("deal")
        .agg(pl.col("amount_reporting_minor").sum())
        .sort(["amount_reporting_minor", "deal"], descending=[True, False])
    )
    return ids.get_column("deal").head(limit).to_list()
