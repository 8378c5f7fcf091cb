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
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import polars as pl

from collector._errors import error_kind
from collector._ownership import Lease, Ownership
from collector.metrics import CollectorMetrics
from probes import Page, Probe
from store import BatchRejected, CursorAdvance, IngestBatch, IngestResult, Store, StoreError

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
"""Called after every written batch of pages with the running totals (for progress bars)."""


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
    batch_records: int = 20_000,
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
            store,
            probe,
            stream,
            result,
            lease,
            started,
            metrics,
            max_seconds,
            on_page,
            batch_records,
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
            store,
            probe,
            stream,
            result,
            lease,
            started,
            metrics,
            max_seconds,
            on_page,
            batch_records,
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
    batch_records: int,
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
            async for pages in _batches(probe.read(stream, cursor), batch_records):
                if lease is not None:
                    await asyncio.to_thread(lease.check)
                done, refused = await _write(store, pages, run_id)
                for batch, written, group in done:
                    result = _add_batch(result, group, batch, written)
                    _count_batch(metrics, system, stream, group, written)
                if on_page is not None:
                    on_page(result)
                if refused is not None:
                    raise refused
                if pages[-1].partial:
                    result = replace(result, partial_reason=str(pages[-1].partial))
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


class _ProbeFailed:
    def __init__(self, error: Exception) -> None:
        self.error = error


_END = object()


BATCH_GAP_SECONDS = 0.1
"""A batch being filled is written when no further page arrives within this gap..."""
BATCH_MAX_SECONDS = 2.0
"""...or when its first page has waited this long (a steady trickle of pages)."""


async def _batches(pages: AsyncIterator[Page], max_records: int) -> AsyncIterator[list[Page]]:
    """The probe's pages, read ahead of the writer and grouped into write batches.

    A reader task fetches pages while the writer writes (HTTP and database overlap). The first
    batch is what has arrived when the writer starts; later batches take consecutive pages while
    they keep coming: a batch is written once it holds ``max_records``
    records, ends at a partial page, the read ends or fails, no page arrived for
    ``BATCH_GAP_SECONDS``, or its first page is ``BATCH_MAX_SECONDS`` old. So a slow vendor's
    pages are written (and the cursor moves) as they come, and a fast read is written in few,
    large transactions (a store transaction has a fixed cost well above that of 200 rows).
    The reader stays at most ``2 * max_records`` records ahead. A probe failure is raised only
    after the pages read before it were handed out, so they are written with their cursor.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()
    queued = 0  # records waiting in the queue
    room = asyncio.Event()
    room.set()

    async def read() -> None:
        nonlocal queued
        try:
            async for page in pages:
                while queued >= 2 * max_records:
                    room.clear()
                    await room.wait()
                queued += page.records
                queue.put_nowait(page)
                if page.partial:
                    break
        except Exception as exc:  # handed to the writer, in order, after the good pages
            queue.put_nowait(_ProbeFailed(exc))
            return
        queue.put_nowait(_END)

    def taken(item: Any) -> Any:
        nonlocal queued
        if isinstance(item, Page):
            queued -= item.records
            room.set()
        return item

    loop = asyncio.get_running_loop()
    first = True  # the first batch is written at once: whatever was read, its cursor moves
    reader = asyncio.create_task(read())
    try:
        while True:
            item = taken(await queue.get())
            batch: list[Page] = []
            started = loop.time()
            records = 0
            while True:
                if item is _END or isinstance(item, _ProbeFailed):
                    break
                batch.append(item)
                records += item.records
                item = None
                if batch[-1].partial or records >= max_records:
                    break
                if not queue.empty():
                    item = taken(queue.get_nowait())
                    continue
                wait = min(BATCH_GAP_SECONDS, started + BATCH_MAX_SECONDS - loop.time())
                if wait <= 0 or first:
                    break
                try:
                    item = taken(await asyncio.wait_for(queue.get(), wait))
                except TimeoutError:
                    break
            if batch:
                first = False
                yield batch
            if isinstance(item, _ProbeFailed):
                raise item.error
            if item is _END or (batch and batch[-1].partial):
                return
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        # Close the probe's generator now (its span, its open locator), not at GC time.
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def _write(
    store: Store, pages: list[Page], run_id: int | None
) -> tuple[list[tuple[IngestBatch, IngestResult, list[Page]]], BatchRejected | None]:
    """Write pages as one transaction; if the store refuses it, page by page up to the bad one.

    Without the fallback, one page the store refuses would keep the good pages queued with it
    from being written (and their cursor from moving) on every later cycle too. Returns what
    was written and the refusal, if any.
    """
    batch = _merge(pages, run_id)
    try:
        return [(batch, await asyncio.to_thread(store.ingest, batch), pages)], None
    except BatchRejected as exc:
        if len(pages) == 1:
            return [], exc
    done = []
    for page in pages:
        single = page.to_batch(probe_run_id=run_id)
        try:
            done.append((single, await asyncio.to_thread(store.ingest, single), [page]))
        except BatchRejected as exc:
            return done, exc
    return done, None


def _merge(pages: list[Page], run_id: int | None) -> IngestBatch:
    """One store batch for consecutive pages: their records, quarantine and the last cursor."""
    if len(pages) == 1:
        return pages[0].to_batch(probe_run_id=run_id)
    frames: dict[str, list[pl.DataFrame]] = {}
    for page in pages:
        for entity, frame in page.frames.items():
            if frame.height:
                frames.setdefault(entity, []).append(frame)
    merged = {
        entity: parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed")
        for entity, parts in frames.items()
    }
    cursor = next((p.cursor for p in reversed(pages) if p.cursor is not None), None)
    last = pages[-1]
    return IngestBatch(
        frames=merged,
        quarantine=tuple(q for p in pages for q in p.quarantine),
        cursor=CursorAdvance(last.system, last.stream, cursor) if cursor is not None else None,
        probe_run_id=run_id,
    )


def _add_batch(
    result: CycleResult, pages: list[Page], batch: IngestBatch, written: IngestResult
) -> CycleResult:
    return replace(
        result,
        pages=result.pages + len(pages),
        records_read=result.records_read + sum(int(p.records_read) for p in pages),
        records_offered=result.records_offered + sum(u.offered for u in written.upserts),
        records_written=result.records_written + written.written,
        stale=result.stale + written.stale,
        quarantined=result.quarantined + written.quarantined,
        cursor_after=batch.cursor.cursor if batch.cursor is not None else result.cursor_after,
    )


def _count_batch(
    metrics: CollectorMetrics | None,
    system: str,
    stream: str,
    pages: list[Page],
    written: IngestResult,
) -> None:
    if metrics is None:
        return
    metrics.pages.labels(system, stream).inc(len(pages))
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
