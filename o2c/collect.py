"""Wiring for `o2c collect`: settings become probe configs, a Collector, its metrics and its ownership.

Everything the collector is given is a plain typed value built here, once; a setting that is
missing or wrong for an enabled system is one ConfigError line naming the variable to set.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import start_http_server
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from alerts import register_exporter
from collector import (
    Collector,
    CollectorConfig,
    CollectorMetrics,
    CompletenessFinding,
    CycleResult,
    Ownership,
    SystemProbe,
    last_successes,
    ownership_for,
)
from o2c.settings import Settings
from probes import (
    PROBES,
    KantataConfig,
    NetSuiteConfig,
    ProbeConfig,
    ProbeSettings,
    RetrySettings,
    SalesforceConfig,
    StripeConfig,
    TimeoutSettings,
    build_client,
)
from store import ConfigError, Store


def probe_settings(settings: Settings) -> ProbeSettings:
    """Retries, time-outs and lookback shared by every probe."""
    c = settings.collector
    return ProbeSettings(
        retry=RetrySettings(
            attempts=c.retries,
            initial_backoff=c.retry_backoff_seconds,
            max_backoff=max(c.retry_backoff_seconds, c.retry_max_backoff_seconds),
            max_retry_after=max(c.retry_max_backoff_seconds, 1.0),
        ),
        timeout=TimeoutSettings(
            connect=min(5.0, c.request_timeout_seconds),
            read=c.request_timeout_seconds,
            write=c.request_timeout_seconds,
            pool=c.request_timeout_seconds,
        ),
        lookback=timedelta(seconds=c.lookback_seconds),
    )


def _need(value: Any, variable: str, system: str) -> Any:
    if value is None or value == "":
        raise ConfigError(
            f"{system} is enabled (O2C_COLLECTOR__SYSTEMS) but {variable} is not set; "
            f"set it, or leave {system} out of O2C_COLLECTOR__SYSTEMS"
        )
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def vendor_config(system: str, settings: Settings) -> ProbeConfig:
    """The probe config of one system from its settings group; ConfigError if incomplete."""
    if system == "salesforce":
        sf = settings.salesforce
        return SalesforceConfig(
            instance_url=_need(sf.instance_url, "O2C_SALESFORCE__INSTANCE_URL", system),
            client_id=_need(sf.client_id, "O2C_SALESFORCE__CLIENT_ID", system),
            client_secret=_need(sf.client_secret, "O2C_SALESFORCE__CLIENT_SECRET", system),
            api_version=sf.api_version,
            verify=sf.verify,
        )
    if system == "kantata":
        k = settings.kantata
        return KantataConfig(
            base_url=k.base_url.rstrip("/"),
            token=_need(k.token, "O2C_KANTATA__TOKEN", system),
        )
    if system == "netsuite":
        ns = settings.netsuite
        base_url = ns.base_url
        if not base_url:
            account = _need(ns.account, "O2C_NETSUITE__ACCOUNT (or O2C_NETSUITE__BASE_URL)", system)
            slug = account.lower().replace("_", "-")
            base_url = f"https://{slug}.suitetalk.api.netsuite.com/services/rest"
        key_file: Path = _need(ns.private_key_file, "O2C_NETSUITE__PRIVATE_KEY_FILE", system)
        try:
            private_key = key_file.read_text()
        except OSError as exc:
            raise ConfigError(
                f"O2C_NETSUITE__PRIVATE_KEY_FILE={str(key_file)!r}: cannot read it ({exc.strerror})"
            ) from None
        return NetSuiteConfig(
            base_url=base_url.rstrip("/"),
            client_id=_need(ns.client_id, "O2C_NETSUITE__CLIENT_ID", system),
            certificate_id=_need(ns.certificate_id, "O2C_NETSUITE__CERTIFICATE_ID", system),
            private_key_pem=private_key,
            account=ns.account,
        )
    if system == "stripe":
        st = settings.stripe
        return StripeConfig(
            api_base=st.api_base.rstrip("/"),
            api_key=_need(st.api_key, "O2C_STRIPE__API_KEY", system),
        )
    raise ConfigError(f"unknown system {system!r}")


def system_probes(settings: Settings, *, tracer_provider: Any | None = None) -> list[SystemProbe]:
    """One SystemProbe per enabled system; configs are checked now, clients built in the loop."""
    shared = probe_settings(settings)
    result = []
    for system in settings.collector.systems:
        config = vendor_config(system, settings)
        cls = PROBES.get(system)
        if cls is None:
            raise ConfigError(
                f"no probe is registered for {system!r} (have: {', '.join(PROBES) or 'none'})"
            )

        def factory(cls: Any = cls, config: ProbeConfig = config) -> Any:
            client = build_client(config, shared, tracer_provider=tracer_provider)
            return cls(client, config, settings=shared, tracer_provider=tracer_provider)

        result.append(SystemProbe(system, tuple(cls.streams), factory))
    return result


def collector_config(settings: Settings, probes: list[SystemProbe]) -> CollectorConfig:
    c = settings.collector
    streams = {p.system: p.streams for p in probes}
    for key in c.intervals:
        system, _, stream = key.partition(".")
        if stream and system in streams and stream not in streams[system]:
            raise ConfigError(
                f"O2C_COLLECTOR__INTERVALS: {system} has no stream {stream!r}; "
                f"its streams: {', '.join(streams[system])}"
            )
    return CollectorConfig(
        systems=tuple(c.systems),
        interval_seconds=c.interval_seconds,
        intervals=dict(c.intervals),
        completeness_interval_seconds=c.completeness_interval_seconds,
        cycle_timeout_seconds=c.cycle_timeout_seconds,
        misfire_grace_seconds=c.misfire_grace_seconds,
        max_concurrent_streams=c.max_concurrent_streams,
    )


def build_collector(
    settings: Settings,
    db: Store,
    *,
    metrics: CollectorMetrics | None = None,
    ownership: Ownership | None = None,
    tracer_provider: Any | None = None,
    probes: list[SystemProbe] | None = None,
) -> Collector:
    """The collector for these settings over ``db`` (ownership: the one that fits the backend)."""
    if probes is None:
        probes = system_probes(settings, tracer_provider=tracer_provider)
    config = collector_config(settings, probes)
    if metrics is not None:
        metrics.observe_freshness(lambda: last_successes(db))
        # /metrics also serves the business KPIs, breaks and health of the store (alerts/).
        register_exporter(metrics.registry, db)
    return Collector(
        db,
        probes,
        config,
        metrics=metrics,
        ownership=ownership if ownership is not None else ownership_for(db.url),
    )


# --------------------------------------------------------------------------- running


def run_once(
    collector: Collector,
    console: Console,
    *,
    systems: list[str] | None = None,
    completeness: bool = False,
) -> tuple[list[CycleResult], list[CompletenessFinding]]:
    """One cycle of every enabled stream with a progress line per stream, then a summary table."""
    pairs = collector.streams(systems)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", justify="left"),
        TextColumn("{task.fields[pages]:>5} pages"),
        TextColumn("{task.fields[records]:>9,} records"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
    tasks = {
        pair: progress.add_task(f"{pair[0]}/{pair[1]}", total=None, pages=0, records=0, status="")
        for pair in pairs
    }

    def on_page(system: str, stream: str, r: CycleResult) -> None:
        progress.update(tasks[(system, stream)], pages=r.pages, records=r.records_read)

    def on_result(r: CycleResult) -> None:
        colour = {"succeeded": "green", "partial": "yellow", "skipped": "cyan"}.get(r.status, "red")
        progress.update(
            tasks[(r.system, r.stream)],
            pages=r.pages,
            records=r.records_read,
            status=f"[{colour}]{r.status}[/{colour}]",
            total=1,
            completed=1,
        )

    async def main() -> tuple[list[CycleResult], list[CompletenessFinding]]:
        try:
            results = await collector.run_once(systems, on_page=on_page, on_result=on_result)
            findings = await collector.check_completeness(systems) if completeness else []
            return results, findings
        finally:
            await collector.aclose()

    with progress:
        results, findings = asyncio.run(main())
    console.print(summary_table(results))
    if findings:
        console.print(findings_table(findings))
    return results, findings


def summary_table(results: list[CycleResult]) -> Table:
    table = Table(title="collect: one cycle per stream")
    for column in ("system", "stream", "status", "pages", "read", "written", "quarantined"):
        table.add_column(
            column,
            justify="right" if column in {"pages", "read", "written", "quarantined"} else "left",
        )
    table.add_column("seconds", justify="right")
    table.add_column("error")
    for r in results:
        table.add_row(
            r.system,
            r.stream,
            r.status,
            f"{r.pages:,}",
            f"{r.records_read:,}",
            f"{r.records_written:,}",
            f"{r.quarantined:,}",
            f"{r.duration_seconds:.1f}",
            f"{r.error_kind}: {r.error}" if r.error_kind else (r.partial_reason or ""),
        )
    return table


def findings_table(findings: list[CompletenessFinding]) -> Table:
    table = Table(title="completeness (source vs store)")
    for column in ("system", "stream", "entity", "source", "store", "ok", "detail"):
        table.add_column(column)
    for f in findings:
        table.add_row(
            f.system,
            f.stream,
            f.entity or "",
            "" if f.source_records is None else f"{f.source_records:,}",
            "" if f.store_records is None else f"{f.store_records:,}",
            "yes" if f.ok else "NO",
            "" if f.ok else f.describe(),
        )
    return table


def run_forever(
    collector: Collector,
    settings: Settings,
    console: Console,
    *,
    add_jobs: Callable[[AsyncIOScheduler], object] | None = None,
) -> None:
    """The long-running mode: the schedule, /metrics, and a clean stop on SIGTERM or Ctrl-C.

    ``add_jobs`` puts more jobs (reconcile, alerts, resyncs: see ``o2c.run``) on the schedule.
    """
    server = None
    c = settings.collector
    registry = collector.metrics.registry if collector.metrics is not None else None
    if c.metrics_port and registry is not None:
        try:
            server, _thread = start_http_server(
                c.metrics_port, addr=c.metrics_host, registry=registry
            )
        except OSError as exc:
            raise ConfigError(
                f"O2C_COLLECTOR__METRICS_PORT={c.metrics_port}: cannot listen ({exc.strerror}); "
                "choose another port or 0 for none"
            ) from None
        console.print(f"metrics on http://{c.metrics_host}:{c.metrics_port}/metrics")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await collector.serve(stop, add_jobs=add_jobs)

    console.print(
        f"collecting {len(collector.streams())} streams of {', '.join(collector.config.systems)}; "
        "stop with Ctrl-C or SIGTERM"
    )
    try:
        asyncio.run(main())
    finally:
        if server is not None:
            server.shutdown()
    console.print("collector stopped")
