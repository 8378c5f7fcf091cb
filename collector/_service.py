"""The collector: every enabled (system, stream) as an APScheduler 3.x job, or all of them once.

One job per stream (``cycle:<system>:<stream>``) on an interval from the configuration, with
``coalesce=True`` (missed runs collapse into one), ``max_instances=1`` (a slow cycle is never
overlapped by the next) and a misfire grace time; one completeness job per system on its own
interval. Jobs are coroutines on an ``AsyncIOScheduler``: probes are async, and store writes go to
worker threads so one stream's database work does not stall another's HTTP.

Across processes, a stream's cycle runs only where its lease was taken (``Ownership``); a process
that loses the race skips that run. Cycles of one system share a semaphore
(``max_concurrent_streams``) because the vendor's rate limits are per system, not per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from collector._completeness import CompletenessFinding, check_stream, save_finding
from collector._config import CollectorConfig
from collector._cycle import SKIPPED, CycleResult, ProgressCallback, run_cycle
from collector._errors import CollectorError
from collector._ownership import Ownership
from collector.metrics import CollectorMetrics
from probes import Probe
from store import Store, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemProbe:
    """How to build one system's probe (inside the running event loop) and which streams it has."""

    system: str
    streams: tuple[str, ...]
    factory: Callable[[], Probe]


class Collector:
    """Runs probe cycles into the store: once (``run_once``) or on a schedule (``start``)."""

    def __init__(
        self,
        store: Store,
        probes: Iterable[SystemProbe],
        config: CollectorConfig | None = None,
        *,
        metrics: CollectorMetrics | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        self.store = store
        self.config = config or CollectorConfig()
        self.metrics = metrics
        self.ownership = ownership
        self._systems = {p.system: p for p in probes}
        unknown = [s for s in self.config.systems if s not in self._systems]
        if unknown:
            raise CollectorError(f"no probe for enabled system(s) {', '.join(unknown)}")
        for system, streams in self.config.streams.items():
            extra = (
                set(streams) - set(self._systems[system].streams)
                if system in self._systems
                else set()
            )
            if system not in self._systems or extra:
                raise CollectorError(
                    f"unknown stream(s) for {system}: {', '.join(sorted(extra)) or system}"
                )
        self._probes: dict[str, Probe] = {}
        self._limits: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]] = {}
        self.findings: dict[tuple[str, str], CompletenessFinding] = {}
        """The latest completeness finding per stream (engine health, apart from data breaks)."""
        self.last_results: dict[tuple[str, str], CycleResult] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._active: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------- what runs

    def streams(self, systems: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(system, stream) pairs that are enabled, in configuration order."""
        wanted = list(systems) if systems is not None else list(self.config.systems)
        unknown = [s for s in wanted if s not in self.config.systems]
        if unknown:
            raise CollectorError(
                f"system(s) {', '.join(unknown)} not enabled; enabled: {', '.join(self.config.systems)}"
            )
        pairs = []
        for system in wanted:
            streams = self.config.streams.get(system) or self._systems[system].streams
            pairs += [(system, stream) for stream in streams]
        return pairs

    def probe(self, system: str) -> Probe:
        """The system's probe, built on first use inside the running loop (its client is async)."""
        probe = self._probes.get(system)
        if probe is None:
            probe = self._probes[system] = self._systems[system].factory()
        return probe

    def _limit(self, system: str) -> asyncio.Semaphore:
        # One semaphore per event loop: a semaphore that ever made a cycle wait is bound to its
        # loop, and `run_once` may be called from a new loop each time (asyncio.run).
        loop = asyncio.get_running_loop()
        entry = self._limits.get(system)
        if entry is None or entry[0] is not loop:
            entry = (loop, asyncio.Semaphore(self.config.max_concurrent_streams))
            self._limits[system] = entry
        return entry[1]

    # ---------------------------------------------------------------- cycles

    async def run_stream(
        self, system: str, stream: str, *, on_page: ProgressCallback | None = None
    ) -> CycleResult:
        """One cycle of one stream (owned, timed out, measured); never raises for failures."""
        with self._tracked():
            async with self._limit(system):
                result = await run_cycle(
                    self.store,
                    self.probe(system),
                    stream,
                    metrics=self.metrics,
                    ownership=self.ownership,
                    max_seconds=self.config.cycle_timeout_seconds,
                    on_page=on_page,
                    batch_records=self.config.batch_records,
                )
        self.last_results[(system, stream)] = result
        return result

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        # Shutdown waits for the cycles that are running (their pages are transactions; letting
        # the current one finish is cheaper than re-reading it after a restart).
        task = asyncio.current_task()
        if task is not None:
            self._active.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._active.discard(task)

    async def run_once(
        self,
        systems: Iterable[str] | None = None,
        *,
        on_page: Callable[[str, str, CycleResult], None] | None = None,
        on_result: Callable[[CycleResult], None] | None = None,
    ) -> list[CycleResult]:
        """One cycle of every enabled stream: systems side by side, and up to
        ``max_concurrent_streams`` streams of a system at a time (the limit the schedule keeps)."""
        pairs = self.streams(systems)

        async def one_stream(system: str, stream: str) -> CycleResult:
            callback = None
            if on_page is not None:

                def callback(r: CycleResult) -> None:
                    on_page(system, stream, r)

            # run_stream waits for the system's limit: streams start in configuration order.
            result = await self.run_stream(system, stream, on_page=callback)
            if on_result is not None:
                on_result(result)
            return result

        gathered = await asyncio.gather(*(one_stream(s, t) for s, t in pairs))
        order = {pair: i for i, pair in enumerate(pairs)}
        return sorted(gathered, key=lambda r: order[(r.system, r.stream)])

    # ---------------------------------------------------------------- completeness

    async def check_completeness(
        self, systems: Iterable[str] | None = None
    ) -> list[CompletenessFinding]:
        """For every stream: catch up (a cycle under the stream's lease), then count both sides.

        Holding the lease across the catch-up and the counts keeps another process's cycle from
        writing in between; what remains is only what the source changed meanwhile.
        """
        findings = []
        with self._tracked():
            for system, stream in self.streams(systems):
                finding = await self._check_one(system, stream)
                if finding is not None:
                    findings.append(finding)
        return findings

    async def _check_one(self, system: str, stream: str) -> CompletenessFinding | None:
        probe = self.probe(system)
        async with self._limit(system):
            lease = None
            if self.ownership is not None:
                lease = await asyncio.to_thread(self.ownership.try_acquire, system, stream)
                if lease is None:
                    return None  # its owner is running a cycle; check again next time
            try:
                catch_up = await run_cycle(
                    self.store,
                    probe,
                    stream,
                    metrics=self.metrics,
                    lease=lease,
                    max_seconds=self.config.cycle_timeout_seconds,
                    batch_records=self.config.batch_records,
                )
                if catch_up.status == SKIPPED or not catch_up.ok:
                    finding = CompletenessFinding(
                        system,
                        stream,
                        datetime.now(UTC),
                        error=f"catch-up cycle {catch_up.status}: {catch_up.error_kind}",
                    )
                else:
                    finding = await check_stream(self.store, probe, stream)
            finally:
                if lease is not None:
                    await asyncio.to_thread(lease.release)
        self._record_finding(finding)
        try:
            await asyncio.to_thread(save_finding, self.store, finding)
        except StoreError as exc:  # the finding still reaches the log and the metrics
            log.warning("completeness %s/%s: finding not stored: %s", system, stream, exc)
        return finding

    def _record_finding(self, finding: CompletenessFinding) -> None:
        key = (finding.system, finding.stream)
        self.findings[key] = finding
        if finding.ok:
            log.info("completeness %s", finding.describe())
        else:
            log.warning("completeness %s", finding.describe())
        if self.metrics is None:
            return
        if finding.difference is not None:
            self.metrics.completeness_mismatch.labels(*key).set(finding.difference)
        if finding.error is None:
            self.metrics.completeness_last_check.labels(*key).set(finding.checked_at.timestamp())
        bad = sum(1 for (s, _), f in self.findings.items() if s == finding.system and not f.ok)
        self.metrics.completeness_findings.labels(finding.system).set(bad)

    # ---------------------------------------------------------------- scheduling

    def schedule(
        self, scheduler: AsyncIOScheduler, *, rng: random.Random | None = None
    ) -> list[Job]:
        """Add one job per enabled stream and one completeness job per system."""
        rng = rng or random.Random()
        now = datetime.now(UTC)
        jobs = []
        grace = max(1, int(self.config.misfire_grace_seconds))
        for system, stream in self.streams():
            first = now + timedelta(seconds=rng.uniform(0, self.config.start_jitter_seconds))
            jobs.append(
                scheduler.add_job(
                    self.run_stream,
                    "interval",
                    args=[system, stream],
                    id=f"cycle:{system}:{stream}",
                    name=f"probe cycle {system}/{stream}",
                    seconds=self.config.interval(system, stream),
                    next_run_time=first,
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=grace,
                    replace_existing=True,
                )
            )
        for system in self.config.systems:
            jobs.append(
                scheduler.add_job(
                    self.check_completeness,
                    "interval",
                    args=[[system]],
                    id=f"completeness:{system}",
                    name=f"completeness check {system}",
                    seconds=self.config.completeness_interval_seconds,
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=grace,
                    replace_existing=True,
                )
            )
        return jobs

    async def serve(
        self,
        stop: asyncio.Event,
        *,
        add_jobs: Callable[[AsyncIOScheduler], object] | None = None,
    ) -> None:
        """Run the schedule until ``stop`` is set, then let running cycles end and close.

        ``add_jobs`` lets the process that owns the collector put its own jobs (reconcile,
        alerts, resyncs) on the same scheduler.
        """
        scheduler = AsyncIOScheduler(timezone=UTC)
        self.schedule(scheduler)
        if add_jobs is not None:
            add_jobs(scheduler)
        scheduler.start()
        self._scheduler = scheduler
        log.info("collector running %d streams", len(self.streams()))
        try:
            await stop.wait()
        finally:
            # Pause first: shutting the scheduler down cancels the jobs in flight, which would
            # turn every cycle that was about to finish into a cancelled one.
            scheduler.pause()
            await self._drain()
            scheduler.shutdown(wait=False)
            self._scheduler = None
            await self.aclose()

    async def _drain(self, grace: float = 30.0) -> None:
        pending = set(self._active)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=grace)
        for task in late:  # a cancelled cycle records itself as failed (cancelled)
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=5)

    async def aclose(self) -> None:
        """Close every probe's HTTP client."""
        probes, self._probes = self._probes, {}
        for probe in probes.values():
            try:
                await probe.client.aclose()
            except Exception:  # closing is best effort; the process is ending anyway
                log.debug("closing the %s client failed", probe.system, exc_info=True)

    def summary(self) -> Mapping[str, Any]:
        return {f"{s}/{t}": r.status for (s, t), r in self.last_results.items()}
