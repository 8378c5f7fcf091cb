"""The long-running process (`o2c run`, `o2c demo`): collection, reconcile, alerts and resyncs on one schedule.

The collector owns the scheduler; this module adds the periodic jobs that stand on the store:
the reconcile (after collection has had its first go), the Alertmanager push and the resync
executor. Every job runs at most once at a time, coalesces missed runs, and never takes the
process down: a failure is logged and the next run tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from alerts import PushReport, push_stuck_alerts
from collector import last_successes
from o2c.settings import Settings
from probes import Probe
from reconciler import Calendar, FrameCache, ReconcileConfig, RunReport, run_reconcile
from reconciler.resync import ResyncConfig, run_resync_cycle
from store import ConfigError, Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
"""The process's notion of now (UTC): the wall clock, or the sandbox estate's in the demo."""


def wall_clock() -> datetime:
    return datetime.now(UTC)


def reconcile_config(settings: Settings) -> ReconcileConfig:
    """The reconciler's configuration from the `reconcile` settings group."""
    r = settings.reconcile
    everywhere = frozenset(r.holidays.get("*", ()))
    weekend = tuple(r.weekend)
    calendars = {
        entity: Calendar(weekend=weekend, holidays=frozenset(days) | everywhere)
        for entity, days in r.holidays.items()
        if entity != "*"
    }
    try:
        return ReconcileConfig(
            reporting_currency=r.reporting_currency,
            fx_rates=dict(r.fx_rates),
            calendars=calendars,
            default_calendar=Calendar(weekend=weekend, holidays=everywhere),
            legal_entity_aliases=dict(r.legal_entity_aliases),
        )
    except ValueError as exc:
        raise ConfigError(f"O2C_RECONCILE__*: {exc}") from None


@dataclass
class Periodic:
    """One job of the long-running process: a name, a period and the work of one run."""

    name: str
    seconds: float
    run: Callable[[], Awaitable[object]]
    first_delay: float = 0.0
    runs: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)
    last_error: str | None = field(default=None, init=False)
    _scheduler: AsyncIOScheduler | None = field(default=None, init=False, repr=False)

    async def tick(self) -> None:
        """One run; APScheduler needs a coroutine function to await it on the event loop."""
        started = time.monotonic()
        try:
            outcome = await self.run()
        except asyncio.CancelledError:
            # The process is stopping; a reconcile in its worker thread still ends by itself.
            log.info("%s interrupted by shutdown", self.name)
            return
        except Exception as exc:  # a failed run is logged and retried on the next tick
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("%s failed", self.name)
            return
        self.runs += 1
        self.last_error = None
        if outcome is not None:  # None: nothing new to say
            log.info("%s done in %.1f s: %s", self.name, time.monotonic() - started, outcome)

    def wake(self, after: float = 0.0) -> None:
        """Run ``after`` seconds from now instead of at the next tick; no-op until scheduled.

        A job already running is not run twice (one instance at a time); its next tick comes.
        """
        if self._scheduler is not None:
            when = datetime.now(UTC) + timedelta(seconds=after)
            self._scheduler.modify_job(f"o2c:{self.name}", next_run_time=when)

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        self._scheduler = scheduler
        scheduler.add_job(
            self.tick,
            "interval",
            id=f"o2c:{self.name}",
            name=self.name,
            seconds=self.seconds,
            next_run_time=datetime.now(UTC) + timedelta(seconds=self.first_delay),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(self.seconds)),
            replace_existing=True,
        )


WAITING_POLL_SECONDS = 1.0
"""How often the reconcile looks again while the first full read is still going."""


class Reconciles:
    """The periodic reconcile: ``run_reconcile`` in a worker thread (polars releases the GIL)."""

    def __init__(
        self,
        settings: Settings,
        db: Store,
        *,
        clock: Clock = wall_clock,
        streams: Iterable[tuple[str, str]] = (),
        tracer_provider: Any | None = None,
    ) -> None:
        self.db = db
        self.tracer_provider = tracer_provider
        self.clock = clock
        self.streams = frozenset(streams)
        self.synced = not self.streams
        self.config = reconcile_config(settings)
        self.cache = (
            FrameCache(settings.data_dir / "reconcile-cache") if settings.reconcile.cache else None
        )
        self.last: RunReport | None = None
        self.after_run: Callable[[], None] | None = None
        """Called on the event loop after each run, e.g. to wake the resync cycle."""
        self._job: Periodic | None = None
        self._waiting = 0  # streams still unread when last said

    def run_once(self) -> RunReport:
        # Traced when OTLP is configured: the run's trace id becomes the exemplar of
        # o2c_reconcile_runs_total on /metrics.
        report = run_reconcile(
            self.db,
            as_of=self.clock(),
            config=self.config,
            cache=self.cache,
            tracer_provider=self.tracer_provider,
        )
        self.last = report
        return report

    def waiting_for(self) -> frozenset[tuple[str, str]]:
        """Streams not yet read through once; empty when the reconcile may run.

        Reconciling a half-read estate would raise breaks that are only unread records (a won
        deal whose project is on the next page) and page on-call for them, so the first run
        waits until every enabled stream has had one successful cycle, in any process.
        """
        if self.synced:
            return frozenset()
        missing = self.streams - set(last_successes(self.db))
        self.synced = not missing
        return missing

    async def __call__(self) -> str | None:
        missing = await asyncio.to_thread(self.waiting_for)
        if missing:
            # Look again soon: the first reconcile should follow the first full read closely.
            if self._job is not None:
                self._job.wake(after=WAITING_POLL_SECONDS)
            said, self._waiting = self._waiting, len(missing)
            if said == len(missing):
                return None
            return (
                f"waiting for the first full read of {len(missing)} of {len(self.streams)} streams"
            )
        report = await asyncio.to_thread(self.run_once)
        if self.after_run is not None:
            self.after_run()
        c = report.counts
        return (
            f"run {report.run_id}: {c['breaks_detected']:,} breaks "
            f"({c['breaks_new']:,} new, {c['breaks_resolved']:,} resolved)"
        )

    def periodic(self, seconds: float, *, first_delay: float = 0.0) -> Periodic:
        self._job = Periodic("reconcile", seconds, self, first_delay=first_delay)
        return self._job


def add_jobs(jobs: list[Periodic]) -> Callable[[AsyncIOScheduler], None]:
    """The hook ``Collector.serve`` calls to put ``jobs`` on its scheduler."""

    def hook(scheduler: AsyncIOScheduler) -> None:
        for job in jobs:
            job.schedule(scheduler)

    return hook


def build_jobs(
    settings: Settings,
    db: Store,
    *,
    streams: Iterable[tuple[str, str]] = (),
    clock: Clock = wall_clock,
    tracer_provider: Any | None = None,
) -> list[Periodic]:
    """Every periodic job of the long-running process beside the collector's own."""
    interval = settings.reconcile.interval_seconds
    reconciles = Reconciles(
        settings, db, clock=clock, streams=streams, tracer_provider=tracer_provider
    )
    jobs = [reconciles.periodic(interval, first_delay=min(10.0, interval))]
    alerts = settings.alerts
    if alerts.alertmanager_url:
        url = alerts.alertmanager_url

        def push() -> PushReport:
            return push_stuck_alerts(db, url, console_url=alerts.console_url, now=clock())

        async def push_alerts() -> str:
            report = await asyncio.to_thread(push)
            if report.error:  # said every time: alerts that do not reach on-call matter
                log.warning("alertmanager push failed: %s", report.error)
            return f"{report.firing:,} firing, {report.resolved:,} resolved"

        jobs.append(Periodic("alertmanager push", alerts.interval_seconds, push_alerts))
    if settings.resync.enabled:
        resyncs = Resyncs(settings, db, clock=clock).periodic(settings.resync.interval_seconds)
        # A fresh register is acted on at once, not up to an interval later.
        reconciles.after_run = resyncs.wake
        jobs.append(resyncs)
    return jobs


class Resyncs:
    """The periodic resync cycle: what the policy repairs by itself, then every due request.

    The executor gets probes of its own (not the collector's): their clients carry the audit
    hooks, and a resync's writes never queue behind a long read.
    """

    def __init__(self, settings: Settings, db: Store, *, clock: Clock = wall_clock) -> None:
        from o2c.resync import policy_from

        self.settings = settings
        self.db = db
        self.clock = clock
        # The confirming reconcile uses the same FX table and calendars as the scheduled one,
        # or it would rewrite the register's amounts and SLA clocks.
        self.config = ResyncConfig(
            policy=policy_from(settings.resync), reconcile=reconcile_config(settings)
        )
        self.probes: dict[str, Probe] = {}

    async def __call__(self) -> str:
        from o2c.collect import system_probes

        if not self.probes:
            self.probes = {p.system: p.factory() for p in system_probes(self.settings)}
        now = await asyncio.to_thread(self.clock)
        summary = await run_resync_cycle(self.db, self.probes, config=self.config, now=now)
        return (
            f"{summary.count('succeeded')} succeeded, {summary.count('retry')} to retry, "
            f"{summary.count('failed')} failed"
        )

    def periodic(self, seconds: float) -> Periodic:
        # After the first reconcile has had its chance: resyncs act on the break register.
        return Periodic("resync", seconds, self, first_delay=min(20.0, seconds))
