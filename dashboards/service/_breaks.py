"""The break queue: the register with acknowledgements, ordered by amount at risk x age, filtered;
and the operator's actions on it (acknowledge, accept with a note and expiry, one or many).

Priority is the amount at risk in the reporting currency times the age in days (plus one, so a
break found today still ranks by its amount); a break without an amount ranks by age alone after
every break with one. Acknowledging keeps a break's status and records who saw it; accepting
moves it out of the active queue until its expiry (the reconciler reopens it then).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

import store
from dashboards.service._auth import User, require
from reconciler import ACTIVE_STATUSES, AGEING_BUCKETS, STATUSES, ReconcileError, accept_break

SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}

QUEUE_COLUMNS = (
    "break_id", "break_type", "severity", "status", "legal_entity", "systems", "amount_minor",
    "currency", "amount_reporting_minor", "reporting_currency", "age_days", "ageing_bucket",
    "priority", "since", "first_detected_at", "remediation", "acknowledged_by",
    "acknowledged_at", "accepted_by", "accepted_until", "accepted_note", "key", "records",
    "detail",
)  # fmt: skip


@dataclass(frozen=True)
class BreakFilters:
    """What the operator narrowed the queue to; an empty tuple means no restriction."""

    types: tuple[str, ...] = ()
    systems: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    legal_entities: tuple[str, ...] = ()
    age_buckets: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ACTIVE_STATUSES
    search: str = ""
    """A deal, invoice or any record id (or part of one), or a break id."""


@dataclass(frozen=True)
class BulkOutcome:
    """What an action on several breaks did: the ids it changed and why the others failed."""

    done: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)


def read_register(db: store.Store, user: User) -> pl.DataFrame:
    """Every break in its current state with its latest acknowledgement (if any)."""
    require(user, "read")
    with db.begin() as conn:
        register = store.read_break_register(conn)
        acks = store.read_acknowledgements(conn)
    return register.join(acks, on="break_id", how="left")


def queue_clock(db: store.Store, user: User) -> datetime:
    """The time ages are measured at: the latest reconcile's as-of (the data's own time), or now.

    In production the two agree within a reconcile interval; against a sandbox whose clock is
    not the wall clock (the demo), ages stay those of the estate.
    """
    require(user, "read")
    with db.begin() as conn:
        latest = store.last_reconcile_as_of(conn)
    return latest or datetime.now(UTC)


def _bucket(age: pl.Expr) -> pl.Expr:
    # The reconciler's ageing buckets (AGEING_BUCKETS): 0-1, 2-7, 8-30, >30 days.
    low, week, month, old = AGEING_BUCKETS
    return (
        pl.when(age <= 1)
        .then(pl.lit(low))
        .when(age <= 7)
        .then(pl.lit(week))
        .when(age <= 30)
        .then(pl.lit(month))
        .otherwise(pl.lit(old))
    )


def prioritise(register: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """The register with age (days since the condition began), ageing bucket and priority."""
    since = pl.coalesce("since", "first_detected_at")
    age = ((pl.lit(now.astimezone(UTC)) - since).dt.total_seconds() / 86_400).clip(lower_bound=0)
    frame = register.with_columns(age.alias("age_days")).with_columns(
        _bucket(pl.col("age_days")).alias("ageing_bucket"),
        (pl.col("amount_reporting_minor").cast(pl.Float64) * (pl.col("age_days") + 1)).alias(
            "priority"
        ),
        pl.col("severity").replace_strict(SEVERITY_RANK, default=0).alias("_rank"),
    )
    return frame.sort(
        ["priority", "age_days", "_rank", "break_id"],
        descending=[True, True, True, False],
        nulls_last=True,
    ).select(QUEUE_COLUMNS)


def break_queue(register: pl.DataFrame, filters: BreakFilters, now: datetime) -> pl.DataFrame:
    """The queue: the filtered register, highest priority first (columns QUEUE_COLUMNS)."""
    frame = register
    for column, wanted in (
        ("break_type", filters.types),
        ("severity", filters.severities),
        ("legal_entity", filters.legal_entities),
        ("status", filters.statuses),
    ):
        if wanted:
            frame = frame.filter(pl.col(column).is_in(list(wanted)))
    if filters.systems:
        parts = pl.col("systems").str.split(",")
        frame = frame.filter(pl.any_horizontal([parts.list.contains(s) for s in filters.systems]))
    text = filters.search.strip()
    if text:
        frame = frame.filter(
            pl.col("records").str.contains(text, literal=True)
            | pl.col("key").str.contains(text, literal=True)
            | (pl.col("break_id") == text)
        )
    frame = prioritise(frame, now)
    if filters.age_buckets:
        frame = frame.filter(pl.col("ageing_bucket").is_in(list(filters.age_buckets)))
    return frame


def filter_choices(register: pl.DataFrame) -> dict[str, list[str]]:
    """The values each filter offers, from what the register holds."""

    def values(column: str) -> list[str]:
        return sorted(register.get_column(column).drop_nulls().unique().to_list())

    systems = sorted(
        register.get_column("systems").drop_nulls().str.split(",").explode().unique().to_list()
    )
    return {
        "types": values("break_type"),
        "systems": [s for s in systems if s],
        "severities": sorted(values("severity"), key=lambda s: -SEVERITY_RANK.get(s, 0)),
        "legal_entities": values("legal_entity"),
        "age_buckets": list(AGEING_BUCKETS),
        "statuses": list(STATUSES),
    }


def queue_csv(queue: pl.DataFrame) -> bytes:
    """The queue as CSV: every row, amounts in minor units with their currency columns."""
    return queue.write_csv().encode()


def _ids(break_ids: Iterable[str]) -> list[str]:
    ids = list(dict.fromkeys(i for i in break_ids if i))
    if not ids:
        raise ValueError("select at least one break")
    return ids


def acknowledge(
    db: store.Store,
    user: User,
    break_ids: Sequence[str],
    *,
    note: str,
    at: datetime | None = None,
) -> BulkOutcome:
    """The user has seen these breaks (their status stays); recorded with the user and note."""
    require(user, "acknowledge")
    ids = _ids(break_ids)
    at = (at or datetime.now(UTC)).astimezone(UTC)
    text = note.strip() or "acknowledged"
    done, failed = [], {}
    with db.begin(write=True) as conn:
        for break_id in ids:
            if store.acknowledge_break(conn, break_id, actor=user.name, note=text, at=at) is None:
                failed[break_id] = f"no break {break_id}"
            else:
                done.append(break_id)
    return BulkOutcome(tuple(done), failed)


def accept(
    db: store.Store,
    user: User,
    break_ids: Sequence[str],
    *,
    note: str,
    until: datetime,
    at: datetime | None = None,
) -> BulkOutcome:
    """Accept active breaks until ``until`` with a note (each one its own transition)."""
    require(user, "accept")
    ids = _ids(break_ids)
    if not note.strip():
        raise ValueError("accepting needs a note saying why")
    done, failed = [], {}
    for break_id in ids:
        try:
            accept_break(db, break_id, note=note.strip(), until=until, actor=user.name, at=at)
        except ReconcileError as exc:
            failed[break_id] = str(exc)
        else:
            done.append(break_id)
    return BulkOutcome(tuple(done), failed)


@dataclass(frozen=True)
class QueueTotal:
    """How many breaks a queue holds and their amount at risk in the reporting currency."""

    breaks: int
    at_risk_minor: int
    currency: str | None


def queue_total(queue: pl.DataFrame) -> QueueTotal:
    """The count and amount at risk of a queue (breaks without an amount add nothing)."""
    currencies = queue.get_column("reporting_currency").drop_nulls().unique().to_list()
    if len(currencies) > 1:
        raise ValueError(f"breaks in several reporting currencies: {sorted(currencies)}")
    total = queue.get_column("amount_reporting_minor").sum()
    return QueueTotal(queue.height, int(total or 0), currencies[0] if currencies else None)
