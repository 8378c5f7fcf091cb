"""Completeness: the source's own count (and amount sum) of a stream against what the store holds.

A mismatch is an *engine-health* finding (the collector may be losing records), kept apart from
the reconciler's data breaks. A failed or empty source read never counts as complete: it is a
finding with an error, not a match. Every finding is appended to the store's
``completeness_findings`` (``save_finding``), where the console and the exporter read the latest
per stream (``store.read_completeness_findings``); the collector also keeps the latest in memory
for its metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from probes import Probe
from store import Store, insert_completeness_finding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompletenessFinding:
    """The result of one completeness check of one stream."""

    system: str
    stream: str
    checked_at: datetime
    entity: str | None = None
    source_records: int | None = None
    store_records: int | None = None
    amount_column: str | None = None
    source_amounts: Mapping[str, int] | None = None
    store_amounts: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def difference(self) -> int | None:
        """Source minus store (positive: records the store is missing)."""
        if self.source_records is None or self.store_records is None:
            return None
        return self.source_records - self.store_records

    @property
    def amounts_match(self) -> bool:
        if self.source_amounts is None:  # the API offers no sum: only counts are compared
            return True
        currencies = set(self.source_amounts) | set(self.store_amounts)
        return all(
            int(self.source_amounts.get(c, 0)) == int(self.store_amounts.get(c, 0))
            for c in currencies
        )

    @property
    def ok(self) -> bool:
        """Counts and sums agree, and the source said something: an empty source answer cannot
        confirm anything (it is what a broken filter or a wrong account also returns)."""
        return (
            self.error is None
            and bool(self.source_records)
            and self.difference == 0
            and self.amounts_match
        )

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.system}/{self.stream}: check failed: {self.error}"
        if not self.source_records:
            return f"{self.system}/{self.stream}: the source reported no records (unconfirmed)"
        if self.ok:
            return f"{self.system}/{self.stream}: complete ({self.store_records} {self.entity})"
        parts = [f"source {self.source_records}, store {self.store_records} {self.entity}"]
        if not self.amounts_match:
            parts.append(
                f"{self.amount_column} source {dict(self.source_amounts or {})} "
                f"store {dict(self.store_amounts)}"
            )
        return f"{self.system}/{self.stream}: mismatch: " + "; ".join(parts)


def save_finding(store: Store, finding: CompletenessFinding) -> None:
    """Append the finding to the store (one short transaction; raises StoreError on failure)."""
    with store.begin(write=True) as conn:
        insert_completeness_finding(
            conn,
            system=finding.system,
            stream=finding.stream,
            checked_at=finding.checked_at,
            ok=finding.ok,
            detail=finding.describe(),
            entity=finding.entity,
            source_records=finding.source_records,
            store_records=finding.store_records,
            amount_column=finding.amount_column,
            source_amounts=finding.source_amounts,
            store_amounts=finding.store_amounts,
            amounts_match=finding.amounts_match,
            error=finding.error,
        )


def store_totals(
    store: Store, entity: str, system: str, amount_column: str | None
) -> tuple[int, dict[str, int]]:
    """Live records of ``entity`` from ``system`` in the store, and ``amount_column`` per currency."""
    columns = ["source_system", "currency"] + ([amount_column] if amount_column else [])
    frame = store.read_frame(entity, columns=columns).filter(pl.col("source_system") == system)
    amounts: dict[str, int] = {}
    if amount_column:
        sums = frame.group_by("currency").agg(pl.col(amount_column).sum())
        amounts = {row[0]: int(row[1] or 0) for row in sums.iter_rows()}
    return frame.height, amounts


async def check_stream(store: Store, probe: Probe, stream: str) -> CompletenessFinding:
    """Count the source, then the store; never raises (a failure is a finding with an error)."""
    system = probe.system
    now = datetime.now(UTC)
    try:
        source = await probe.count(stream)
    except Exception as exc:  # a failed read is a finding, never "complete"
        return CompletenessFinding(system, stream, now, error=_one_line(exc))
    entity = str(source.entity)
    try:
        records, amounts = await asyncio.to_thread(
            store_totals, store, entity, system, source.amount_column
        )
    except Exception as exc:
        return CompletenessFinding(system, stream, now, entity=entity, error=_one_line(exc))
    source_amounts = (
        {str(k).upper(): int(v) for k, v in source.amount_minor.items()}
        if source.amount_minor is not None
        else None
    )
    return CompletenessFinding(
        system,
        stream,
        now,
        entity=entity,
        source_records=int(source.records),
        store_records=records,
        amount_column=source.amount_column,
        source_amounts=source_amounts,
        store_amounts={k.upper(): v for k, v in amounts.items()},
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]
