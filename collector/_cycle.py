"""One probe cycle of one (system, stream): cursor in, pages written with their cursor, run recorded.

The invariant that makes the collector crash-safe: a cursor only ever reaches the store in the
same transaction as the records it covers (``Store.ingest`` of ``Page.to_batch``). Whatever
happens between pages (a vendor error, a time-out, SIGKILL), the stored cursor points at the
last page that was fully written, and the next cycle re-reads from there; re-read records are
absorbed by the idempotent upsert.

A cycle never raises for a vendor or database failure: it ends ``failed`` with an error kind and
records that in ``probe_runs`` (when the database can still be reached) and in the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from collector._errors import error_kind
from collector._ownership import Lease, Ownership
from collector.metrics import CollectorMetrics
from probes import Page, Probe
from store import IngestBatch, IngestResult, Store, StoreError

log = logging.getLogger(__name__)

SUCCEEDED = "succeeded"
PARTIAL = "partial"
FAILED = "failed"
SKIPPED = "skipped"
"""Another cycle of the stream (this process or another) owns it: nothing was read or written."""


@dataclass(frozen=True)
class CycleResult:
    """What one cycle did. ``error`` is a one-line message without secrets."""

    system: str
    stream: str
    status: str
    started_at: datetime
    duration_seconds: float = 0.0
    run_id: int | None = None
    pages: int = 0
    records_read: int = 0
    records_offered: int = 0
    records_written: int = 0
    stale: int = 0
    quarantined: int = 0
    cursor_before: str | None = None
    cursor_after: str | None = None
    error_kind: str | None = None
    error: str | None = None
    partial_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (SUCCEEDED, PARTIAL, SKIPPED)


ProgressCallback = Callable[[CycleResult], None]
"""Called after every written page with the running totals (for progress bars)."""


async def run_cycle(
    store: Store,
    probe: Probe,
    stream: str,
    *,
    metrics: CollectorMetrics | None = None,
    ownership: Ownership | None = None,
    lease: Lease | None = None,
    max_seconds: float | None = None,
    on_page: ProgressCallback | None = None,
) -> CycleResult:
    """Run one cycle of ``probe``'s ``stream`` into ``store``; returns what happened, never raises
    for vendor or store failures (cancellation is re-raised after the run is recorded).

    With ``ownership``, the cycle first takes the stream's lease (or is skipped) and releases it
    at the end; a caller that already holds a ``lease`` passes it instead and keeps it.
    """
    system = probe.system
    started = time.perf_counter()
    result = CycleResult(system, stream, FAILED, datetime.now(UTC))
    if lease is not None:
        return await _run_owned(
            store, probe, stream, result, lease, started, metrics, max_seconds, on_page
        )
    if ownership is not None:
        try:
            lease = await asyncio.to_thread(ownership.try_acquire, system, stream)
        except StoreError as exc:
            return _finish_unrecorded(result, exc, started, metrics)
        if lease is None:
            log.info("%s/%s: owned by another cycle, skipped", system, stream)
            if metrics is not None:
                metrics.cycles.labels(system, stream, SKIPPED).inc()
            return replace(result, status=SKIPPED)
    try:
        return await _run_owned(
            store, probe, stream, result, lease, started, metrics, max_seconds, on_page
        )
    finally:
        if lease is not None:
            await asyncio.to_thread(lease.release)


async def _run_owned(
    store: Store,
    probe: Probe,
    stream: str,
    result: CycleResult,
    lease: Lease | None,
    started: float,
    metrics: CollectorMetrics | None,
    max_seconds: float | None,
    on_page: ProgressCallback | None,
) -> CycleResult:
    system = probe.system
    try:
        cursor = await asyncio.to_thread(store.read_cursor, system, stream)
        run_id = await asyncio.to_thread(store.start_probe_run, system, stream)
    except StoreError as exc:
        return _finish_unrecorded(result, exc, started, metrics)
    result = replace(result, run_id=run_id, cursor_before=cursor, cursor_after=cursor)
    if lease is not None:
        await _close_abandoned_runs(store, system, stream, run_id)
    failure: BaseException | None = None
    cancelled = False
    try:
        async with asyncio.timeout(max_seconds):
            pages = probe.read(stream, cursor)
            try:
                async for page in pages:
                    if lease is not None:
                        await asyncio.to_thread(lease.check)
                    batch = page.to_batch(probe_run_id=run_id)
                    written = await asyncio.to_thread(store.ingest, batch)
                    result = _add_page(result, page, batch, written)
                    _count_page(metrics, system, stream, page, written)
                    if on_page is not None:
                        on_page(result)
                    if page.partial:
                        result = replace(result, partial_reason=str(page.partial))
                        break
            finally:
                # Close the probe's generator now (its span, its open locator), not at GC time.
                aclose = getattr(pages, "aclose", None)
                if aclose is not None:
                    await aclose()
    except asyncio.CancelledError:
        cancelled = True
        failure = asyncio.CancelledError("cycle cancelled")
    except Exception as exc:  # every failure ends the cycle as failed, with its kind
        failure = exc
    if failure is None:
        status = PARTIAL if result.partial_reason else SUCCEEDED
        result = replace(result, status=status)
    else:
        kind = "cancelled" if cancelled else error_kind(failure)
        message = _one_line(failure)
        if kind == "internal":
            log.error("%s/%s: cycle failed", system, stream, exc_info=failure)
        else:
            log.warning("%s/%s: cycle failed (%s): %s", system, stream, kind, message)
        result = replace(result, status=FAILED, error_kind=kind, error=message)
    result = replace(result, duration_seconds=time.perf_counter() - started)
    await _record_finish(store, result)
    _count_cycle(metrics, result, probe)
    if cancelled:
        raise asyncio.CancelledError()
    return result


def _add_page(
    result: CycleResult, page: Page, batch: IngestBatch, written: IngestResult
) -> CycleResult:
    return replace(
        result,
        pages=result.pages + 1,
        records_read=result.records_read + int(page.records_read),
        records_offered=result.records_offered + sum(u.offered for u in written.upserts),
        records_written=result.records_written + written.written,
        stale=result.stale + written.stale,
        quarantined=result.quarantined + written.quarantined,
        cursor_after=batch.cursor.cursor if batch.cursor is not None else result.cursor_after,
    )


def _count_page(
    metrics: CollectorMetrics | None,
    system: str,
    stream: str,
    page: Page,
    written: IngestResult,
) -> None:
    if metrics is None:
        return
    metrics.pages.labels(system, stream).inc()
    metrics.records_ingested.labels(system, stream).inc(sum(u.offered for u in written.upserts))
    metrics.records_written.labels(system, stream).inc(written.written)
    if written.quarantined:
        metrics.records_quarantined.labels(system, stream).inc(written.quarantined)


def _count_cycle(metrics: CollectorMetrics | None, result: CycleResult, probe: Any) -> None:
    if metrics is None:
        return
    metrics.cycles.labels(result.system, result.stream, result.status).inc()
    metrics.cycle_duration.labels(result.system, result.stream).observe(result.duration_seconds)
    if result.error_kind is not None:
        metrics.errors.labels(result.system, result.stream, result.error_kind).inc()
    quota = getattr(probe, "quota", None)
    fraction = getattr(quota, "fraction", None)
    if fraction is not None:
        metrics.quota_used.labels(result.system).set(float(fraction))


async def _record_finish(store: Store, result: CycleResult) -> None:
    if result.run_id is None:
        return
    error = f"{result.error_kind}: {result.error}" if result.error_kind else None
    if result.partial_reason and not error:
        error = f"partial: {result.partial_reason}"
    try:
        # Shielded: a cancelled cycle must still close its run, or it stays "running" forever.
        await asyncio.shield(
            asyncio.to_thread(
                store.finish_probe_run, result.run_id, status=result.status, error=error
            )
        )
    except StoreError as exc:
        log.warning(
            "%s/%s: could not record the end of run %s: %s",
            result.system,
            result.stream,
            result.run_id,
            _one_line(exc),
        )


async def _close_abandoned_runs(store: Store, system: str, stream: str, current: int) -> None:
    """Runs of this stream still "running" belong to a cycle that died (SIGKILL, power loss).

    Only the owner of the stream may say so: holding its lease, no other cycle of the stream can
    be running anywhere, so every other open run of it is abandoned.
    """
    try:
        runs = await asyncio.to_thread(store.list_probe_runs, source_system=system, limit=50)
        for run in runs:
            if run.stream == stream and run.status == "running" and run.id != current:
                await asyncio.to_thread(
                    store.finish_probe_run, run.id, status=FAILED, error="abandoned: the cycle died"
                )
    except StoreError as exc:  # bookkeeping only; the cycle itself can still run
        log.warning("%s/%s: could not close abandoned runs: %s", system, stream, _one_line(exc))


def _finish_unrecorded(
    result: CycleResult, exc: BaseException, started: float, metrics: CollectorMetrics | None
) -> CycleResult:
    """A cycle that failed before its run could be recorded (the database is unreachable)."""
    kind = error_kind(exc)
    log.warning(
        "%s/%s: cycle failed before it started (%s): %s",
        result.system,
        result.stream,
        kind,
        _one_line(exc),
    )
    result = replace(
        result,
        status=FAILED,
        error_kind=kind,
        error=_one_line(exc),
        duration_seconds=time.perf_counter() - started,
    )
    _count_cycle(metrics, result, None)
    return result


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:500]
