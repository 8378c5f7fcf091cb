"""The `o2c` command line: one entry point for operators, every command with --help and an example."""

from __future__ import annotations

import dataclasses
import sys

import typer
from rich.console import Console
from rich.table import Table

import store
from o2c.console import console_command
from o2c.resync import app as resync_app
from o2c.settings import Settings, describe_settings, load_settings, masked_url
from sandbox.cli import app as sandbox_app
from store import O2CError

app = typer.Typer(
    name="o2c",
    help="o2c-monitor: watch opportunity-to-cash across CRM, PSA, ERP and billing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="The store: create, migrate and inspect the database.", no_args_is_help=True
)
config_app = typer.Typer(
    help="Settings: what is in effect and where it came from.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(
    sandbox_app, name="sandbox", help="The simulated estate: serve it on loopback, export it."
)
app.command("console")(console_command)
app.add_typer(resync_app, name="resync")

console = Console()
errors = Console(stderr=True)


def _settings() -> Settings:
    return load_settings()


def _configure_logging(level: str) -> None:
    """Log lines on stderr through rich; the libraries' routine chatter only from WARNING up."""
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(
        level=getattr(logging, level),
        handlers=[RichHandler(console=errors, show_path=False)],
        format="%(message)s",
        force=True,
    )
    for chatty in ("apscheduler", "alembic", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    # A run skipped because the previous one of the same job is still going is the schedule
    # working as designed (max_instances=1); each cycle's own outcome is logged by its job.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)


def _open_store(settings: Settings) -> store.Store:
    if settings.store_url.startswith("sqlite:///"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return store.Store(settings.store_url)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the schema or migrate it to the newest revision; safe to run again.

    Example: O2C_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/o2c o2c db upgrade
    """
    settings = _settings()
    db = _open_store(settings)
    try:
        before = store.status(db.engine)
        after = store.upgrade(db.engine)
    finally:
        db.dispose()
    where = masked_url(settings.store_url)
    if before.current == after.current:
        console.print(f"{where}: already at revision {after.current}")
    else:
        console.print(f"{where}: upgraded {before.current or 'empty'} -> {after.current}")


@db_app.command("status")
def db_status() -> None:
    """Show the database, its schema revision against the code's, and record counts.

    Example: o2c db status
    """
    settings = _settings()
    db = _open_store(settings)
    try:
        state = store.status(db.engine)
        counts = {name: db.count(name) for name in store.ENTITIES} if state.up_to_date else {}
    finally:
        db.dispose()
    console.print(f"database: {masked_url(settings.store_url)} ({state.backend})")
    console.print(f"revision: {state.current or 'none (empty database)'}; code head: {state.head}")
    if not state.up_to_date:
        console.print("[yellow]schema is not at head: run `o2c db upgrade`[/yellow]")
        raise typer.Exit(1)
    table = Table("entity", "records")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    console.print(table)


@config_app.command("docs")
def config_docs() -> None:
    """Print every setting with its default and meaning as Markdown (what docs/settings.md holds).

    Example: o2c config docs > docs/settings.md
    """
    from o2c.settings import settings_reference

    print(settings_reference(), end="")


@config_app.command("show")
def config_show() -> None:
    """Print every setting in effect, secrets masked, with its variable and meaning.

    Example: O2C_DATA_DIR=/var/lib/o2c o2c config show
    """
    for variable, value, description in describe_settings(_settings()):
        # values and descriptions hold JSON brackets, which rich would take for markup
        console.print(f"{variable}={value}", highlight=False, soft_wrap=True, markup=False)
        console.print(
            f"    {description}", style="dim", highlight=False, soft_wrap=True, markup=False
        )


@app.command("collect")
def collect(
    once: bool = typer.Option(
        False, "--once", help="Run one cycle of every enabled stream, print a summary, exit."
    ),
    system: list[str] = typer.Option(  # noqa: B008 (typer declares options this way)
        [], "--system", "-s", help="Only this system (repeatable); default: O2C_COLLECTOR__SYSTEMS."
    ),
    check: bool = typer.Option(
        False, "--check", help="With --once: then compare source counts with the store."
    ),
) -> None:
    """Poll the vendors into the store: once (--once) or on a schedule until stopped.

    Each (system, stream) is one job: it reads the stored cursor, pages the vendor and writes each page with its cursor in one transaction. Several processes may share a PostgreSQL store (each stream is owned by one at a time); a SQLite store admits one collector process.

    Exit status of --once: 0 when every stream succeeded, partly succeeded or was owned elsewhere; 1 when any failed.

    Example: O2C_COLLECTOR__SYSTEMS=salesforce,stripe o2c collect --once --check
    """

    from collector import CollectorMetrics
    from o2c import collect as wiring
    from probes import configure_tracing

    settings = _settings()
    _configure_logging("WARNING" if once else settings.log_level)
    if system and not once:
        raise store.ConfigError(
            "--system works with --once; set O2C_COLLECTOR__SYSTEMS for the schedule"
        )
    # Settings first: a missing credential is reported before anything is opened.
    tracer = configure_tracing(settings.collector.otlp_endpoint)
    probes = wiring.system_probes(settings, tracer_provider=tracer)
    db = _open_store(settings)
    try:
        store.require_head(db.engine)
        collector = wiring.build_collector(
            settings, db, metrics=CollectorMetrics(), tracer_provider=tracer, probes=probes
        )
        try:
            if once:
                results, _ = wiring.run_once(
                    collector, console, systems=system or None, completeness=check
                )
                if any(not r.ok for r in results):
                    raise typer.Exit(1)
            else:
                wiring.run_forever(collector, settings, console)
        finally:
            if collector.ownership is not None:
                collector.ownership.close()
    finally:
        db.dispose()


@app.command("run")
def run_command() -> None:
    """The production process: poll every system, reconcile, and serve /metrics until stopped.

    Systems, credentials and the store come from settings (`o2c config show`); a PostgreSQL store
    may be shared by several `o2c run` processes (each stream is owned by one at a time).

    Example: O2C_DATABASE_URL=postgresql+psycopg://o2c@db:5432/o2c o2c run
    """

    from collector import CollectorMetrics
    from o2c import collect as wiring
    from o2c import run as process
    from probes import configure_tracing

    settings = _settings()
    _configure_logging(settings.log_level)
    tracer = configure_tracing(settings.collector.otlp_endpoint)
    probes = wiring.system_probes(settings, tracer_provider=tracer)
    db = _open_store(settings)
    try:
        store.require_head(db.engine)
        # A system that cannot be reached now is said once, up front; the process still starts
        # (an outage at start-up is not a configuration error) and its cycles keep trying.
        from o2c.check import system_problems

        for problem in system_problems(settings):
            errors.print(f"[yellow]warning:[/yellow] {problem}", highlight=False, soft_wrap=True)
        collector = wiring.build_collector(
            settings, db, metrics=CollectorMetrics(), tracer_provider=tracer, probes=probes
        )
        jobs = process.build_jobs(settings, db, streams=collector.streams(), tracer_provider=tracer)
        try:
            wiring.run_forever(collector, settings, console, add_jobs=process.add_jobs(jobs))
        finally:
            if collector.ownership is not None:
                collector.ownership.close()
    finally:
        db.dispose()


@app.command("check")
def check_command() -> None:
    """Check the store and every enabled system: reachable, and our credentials accepted.

    Prints one line per problem with the settings to look at; exit status 2 when there is one.

    Example: O2C_COLLECTOR__SYSTEMS=kantata,stripe o2c check
    """
    from o2c.check import system_problems

    settings = _settings()
    db = _open_store(settings)
    try:
        store.require_head(db.engine)
    finally:
        db.dispose()
    console.print(f"store {masked_url(settings.store_url)}: reachable, schema current")
    problems = system_problems(settings)
    if problems:
        raise store.ConfigError("; ".join(problems))
    console.print(
        f"systems {', '.join(settings.collector.systems)}: reachable, credentials accepted"
    )


@app.command("demo")
def demo_command(
    scale: float = typer.Option(
        1.0, "--scale", help="Size of the firm; 1.0 is about 2,000 accounts."
    ),
    seed: int = typer.Option(7, "--seed", help="Same seed and scale, same estate."),
    speedup: float = typer.Option(
        600.0, "--speedup", help="The estate's clock runs this many times faster than real time."
    ),
    metrics_port: int = typer.Option(9464, "--metrics-port", help="Port of /metrics (0: none)."),
    console_port: int = typer.Option(8501, "--console-port", help="Port of the console."),
    with_console: bool = typer.Option(
        True, "--console/--no-console", help="Start the Streamlit console too."
    ),
    with_prometheus: bool = typer.Option(
        False,
        "--with-prometheus",
        help="Also start Prometheus (the project's rules) and Alertmanager, when installed.",
    ),
    prometheus_port: int = typer.Option(9090, "--prometheus-port", help="Prometheus port."),
    alertmanager_port: int = typer.Option(9093, "--alertmanager-port", help="Alertmanager port."),
) -> None:
    """The whole product on embedded defaults: sandbox estate, o2c run and the console, until Ctrl-C.

    The store is SQLite in O2C_DATA_DIR (default ./data); a restart continues from it.

    Example: o2c demo --scale 0.2 --speedup 1200
    """
    from o2c.demo import DemoOptions, run_demo

    _configure_logging(_settings().log_level)
    options = DemoOptions(
        scale=scale,
        seed=seed,
        speedup=speedup,
        metrics_port=metrics_port,
        console_port=console_port,
        console=with_console,
        with_prometheus=with_prometheus,
        prometheus_port=prometheus_port,
        alertmanager_port=alertmanager_port,
    )
    try:
        run_demo(options, console)
    except KeyboardInterrupt:
        console.print("demo stopped")


@app.command("reconcile")
def reconcile_command(
    as_of: str | None = typer.Option(
        None, "--as-of", help="ISO time to measure at (default now; no offset means UTC)."
    ),
    fx: list[str] = typer.Option(  # noqa: B008 (typer declares options this way)
        [], "--fx", help="Rate to the reporting currency, CUR=RATE (repeatable), e.g. EUR=1.08."
    ),
    reporting_currency: str | None = typer.Option(
        None, "--reporting-currency", help="ISO code (default: O2C_RECONCILE__REPORTING_CURRENCY)."
    ),
    cache: bool = typer.Option(
        True, "--cache/--no-cache", help="Keep frames in <data_dir>/reconcile-cache between runs."
    ),
) -> None:
    """Link every deal end to end, find breaks, update their lifecycle and snapshot the KPIs.

    With the cache (default) a run reads only what the store wrote since the previous one.

    Example: o2c reconcile --as-of 2026-06-30T12:00:00Z --fx EUR=1.08 --fx GBP=1.27
    """
    from datetime import UTC, datetime
    from decimal import Decimal, InvalidOperation

    import polars as pl

    from reconciler import FrameCache, run_reconcile

    at = None
    if as_of is not None:
        try:
            at = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
        except ValueError:
            raise store.ConfigError(f"--as-of {as_of!r}: not an ISO 8601 time") from None
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
    rates: dict[str, Decimal] = {}
    for item in fx:
        code, _, rate = item.partition("=")
        try:
            rates[code.strip()] = Decimal(rate)
        except InvalidOperation:
            raise store.ConfigError(f"--fx {item!r}: expected CUR=RATE, e.g. EUR=1.08") from None
    settings = _settings()
    from o2c.run import reconcile_config

    base = reconcile_config(settings)
    try:
        config = dataclasses.replace(
            base,
            reporting_currency=reporting_currency or base.reporting_currency,
            fx_rates={**settings.reconcile.fx_rates, **rates},
        )
    except ValueError as exc:
        raise store.ConfigError(f"reconcile options: {exc}") from None
    from probes import configure_tracing

    # With an OTLP endpoint the run is one span; its trace id becomes the exporter's exemplar.
    tracer = configure_tracing(settings.collector.otlp_endpoint)
    db = _open_store(settings)
    try:
        store.require_head(db.engine)
        frames = FrameCache(settings.data_dir / "reconcile-cache") if cache else None
        report = run_reconcile(db, as_of=at, config=config, cache=frames, tracer_provider=tracer)
    finally:
        db.dispose()
        if tracer is not None:
            tracer.shutdown()  # export the span before the command exits
    console.print(
        f"run {report.run_id} as of {report.as_of.isoformat()}"
        + (" (replay: break register unchanged)" if report.replay else "")
    )
    c = report.counts
    console.print(
        f"breaks detected {c['breaks_detected']:,}: new {c['breaks_new']:,}, "
        f"resolved {c['breaks_resolved']:,}, reopened {c['breaks_reopened']:,}"
    )
    table = Table("break type", "open", "detected")
    detected = report.result.breaks_by_type()
    for name, count in report.open_by_type.items():
        if count or detected[name]:
            table.add_row(name, f"{count:,}", f"{detected[name]:,}")
    console.print(table)
    suggested = report.result.suggestions
    console.print(
        f"suggested links for review: {suggested.height:,} "
        f"({int(suggested.get_column('ambiguous').sum()):,} ambiguous)"
    )
    kpis = Table("KPI", "value")
    for row in report.kpis.filter(pl.col("dimension") == "all").iter_rows(named=True):
        if row["value_minor"] is not None:
            shown = f"{row['value_minor']:,} {row['currency']} minor"
        elif row["value"] is not None:
            shown = f"{row['value']:,.2f}"
        else:
            shown = "n/a"
        kpis.add_row(row["kpi"], shown)
    console.print(kpis)


def main() -> None:
    """Console-script entry point: O2CError becomes one clear line and exit status 2."""
    try:
        app()
    except O2CError as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
