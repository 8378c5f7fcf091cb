"""`o2c demo`: the sandbox estate, the long-running process and the console, in one command.

The sandbox runs in a child process (the vendors are another machine in real life, and a
separate process keeps its HTTP servers off this process's GIL), its clock running faster than
real time. This process runs what `o2c run` runs, against it, on a SQLite store in the data
directory; the Streamlit console is a second child. Ctrl-C (or SIGTERM) stops all three.

A restart continues: the store keeps everything, and the estate is generated again from its
seed with its clock moved to where it stopped (``<data_dir>/demo/state.json``). Writes that
resyncs made in the sandbox are not kept by it; the store still has what was read of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rich.console import Console

from o2c.settings import Settings, load_settings, masked_url
from sandbox.server import ChildSandbox, spawn
from store import ConfigError, Store, upgrade

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    """What `o2c demo` was asked for."""

    scale: float = 1.0
    seed: int = 7
    speedup: float = 600.0
    metrics_port: int = 9464
    console_port: int = 8501
    console: bool = True
    with_prometheus: bool = False
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    interval_seconds: float = 5.0
    reconcile_seconds: float = 10.0


class DemoState:
    """Where the demo's estate clock stood, so that a restart continues from there."""

    def __init__(self, directory: Path, options: DemoOptions) -> None:
        self.path = directory / "state.json"
        self.options = options
        self.started_at: datetime | None = None
        self.advanced = 0.0
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            if (saved.get("seed"), saved.get("scale")) == (options.seed, options.scale):
                self.advanced = float(saved.get("advanced_seconds", 0.0))
            else:
                log.warning(
                    "%s is for seed %s scale %s; starting a new estate clock",
                    self.path,
                    saved.get("seed"),
                    saved.get("scale"),
                )

    def save(self, estate_now: datetime) -> None:
        if self.started_at is None:
            return
        advanced = self.advanced + (estate_now - self.started_at).total_seconds()
        body = {
            "seed": self.options.seed,
            "scale": self.options.scale,
            "advanced_seconds": advanced,
            "estate_now": estate_now.isoformat(),
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2))
        tmp.replace(self.path)


def netsuite_key(directory: Path) -> Path:
    """The demo's NetSuite signing key (the sandbox does not verify it; real accounts do)."""
    path = directory / "netsuite-demo.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
    return path


def vendor_overrides(
    urls: Mapping[str, str],
    creds: Mapping[str, Mapping[str, str]],
    ca_file: str | Path,
    key_file: Path,
) -> dict[str, dict[str, str]]:
    """Settings groups pointing every vendor at a sandbox, as an operator would write them.

    ``urls``, ``creds`` and ``ca_file`` are what the sandbox describes (in a child process or
    in this one); ``key_file`` signs NetSuite's JWT assertion.
    """
    return {
        "salesforce": {
            "instance_url": urls["salesforce"],
            "client_id": creds["salesforce"]["client_id"],
            "client_secret": creds["salesforce"]["client_secret"],
            "verify": str(ca_file),
        },
        "kantata": {
            "base_url": f"{urls['kantata']}/api/v1",
            "token": creds["kantata"]["access_token"],
        },
        "netsuite": {
            "base_url": f"{urls['netsuite']}/services/rest",
            "account": creds["netsuite"]["account"],
            "client_id": creds["netsuite"]["client_id"],
            "certificate_id": "sandbox-cert",
            "private_key_file": str(key_file),
        },
        "stripe": {"api_base": urls["stripe"], "api_key": creds["stripe"]["secret_key"]},
    }


def demo_settings(
    sandbox: ChildSandbox,
    key_file: Path,
    options: DemoOptions,
    *,
    alertmanager_url: str | None = None,
) -> Settings:
    """The operator's settings (environment, o2c.toml) with the vendors and pace of the demo."""
    base = load_settings()
    overrides: dict[str, Any] = vendor_overrides(
        sandbox.urls, sandbox.info["credentials"], sandbox.ca_file, key_file
    )
    overrides["collector"] = {
        **base.collector.model_dump(),
        "interval_seconds": options.interval_seconds,
        "completeness_interval_seconds": max(60.0, options.interval_seconds * 12),
        "metrics_port": options.metrics_port,
    }
    # The operator's table of legal entities: NetSuite names its subsidiaries, Salesforce
    # carries codes; the estate describes its own firm.
    aliases = {e["name"]: e["code"] for e in sandbox.info.get("legal_entities", [])}
    overrides["reconcile"] = {
        **base.reconcile.model_dump(),
        "interval_seconds": options.reconcile_seconds,
        "legal_entity_aliases": {**aliases, **base.reconcile.legal_entity_aliases},
    }
    # Repairs follow each reconcile closely, so that the demo shows them within a minute or two.
    overrides["resync"] = {
        **base.resync.model_dump(),
        "interval_seconds": min(base.resync.interval_seconds, options.reconcile_seconds),
    }
    overrides["alerts"] = {
        **base.alerts.model_dump(),
        "console_url": f"http://{base.console.address}:{options.console_port}",
        "interval_seconds": min(base.alerts.interval_seconds, 30.0),
    }
    if alertmanager_url:
        overrides["alerts"]["alertmanager_url"] = alertmanager_url
    return load_settings(**overrides)


class SandboxClock:
    """The estate's now, read from the sandbox (its clock runs ``speedup`` times real time)."""

    def __init__(self, url: str) -> None:
        self.url = f"{url}/__admin/health"

    def __call__(self) -> datetime:
        response = httpx.get(self.url, timeout=5.0)
        response.raise_for_status()
        now = datetime.fromisoformat(response.json()["now"])
        return now if now.tzinfo else now.replace(tzinfo=UTC)


def console_env(settings: Settings) -> dict[str, str]:
    """The console child's environment: the same store and data directory, the demo's user."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("O2C_")}
    env["O2C_DATABASE_URL"] = settings.store_url
    env["O2C_DATA_DIR"] = str(settings.data_dir)
    console = settings.console
    env["O2C_CONSOLE__LOCAL_USER"] = console.local_user
    # The demo's one user may do everything, so that every page's actions can be tried.
    env["O2C_CONSOLE__LOCAL_ROLE"] = "approver"
    collector = settings.collector
    if collector.metrics_port:
        env["O2C_CONSOLE__COLLECTOR_METRICS_URL"] = (
            f"http://{collector.metrics_host}:{collector.metrics_port}/metrics"
        )
    return env


@contextmanager
def console_process(settings: Settings, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`streamlit run` of the console as a child, stopped on the way out."""
    from o2c.console import SCRIPT, streamlit_command

    command = streamlit_command(SCRIPT, address=settings.console.address, port=port)
    log_file = (settings.data_dir / "demo" / "console.log").open("ab")
    process = subprocess.Popen(
        command, env=console_env(settings), stdout=log_file, stderr=subprocess.STDOUT,
        start_new_session=True,  # stopped by stop_child, not by the terminal's Ctrl-C
    )  # fmt: skip
    try:
        yield process
    finally:
        stop_child(process)
        log_file.close()


def stop_child(process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def sandbox_process(options: DemoOptions, state: DemoState) -> Iterator[ChildSandbox]:
    """The sandbox estate in a child process, its clock resumed where the last demo left it."""
    try:
        child = spawn(
            scale=options.scale,
            seed=options.seed,
            speedup=options.speedup,
            advance_seconds=state.advanced or None,
            timeout=600.0,
            # Ctrl-C stops the demo, which stops its children in order: the sandbox last, so the
            # collector never retries against vendors that have already gone.
            new_session=True,
        )
    except RuntimeError as exc:
        raise ConfigError(f"the sandbox did not start: {exc}") from None
    try:
        state.started_at = SandboxClock(child.urls["stripe"])()
        yield child
    finally:
        with suppress(Exception):  # the clock is best effort: the store is what matters
            state.save(SandboxClock(child.urls["stripe"])())
        child.stop()


def run_demo(options: DemoOptions, out: Console) -> None:
    """Start everything, print where it is, and run until Ctrl-C or SIGTERM."""
    # Until the scheduler's own handlers are in place, SIGTERM unwinds like Ctrl-C, so that
    # the children are stopped on every way out.
    signal.signal(signal.SIGTERM, _interrupt)
    base = load_settings()
    directory = base.data_dir / "demo"
    directory.mkdir(parents=True, exist_ok=True)
    state = DemoState(directory, options)
    key_file = netsuite_key(directory)
    resumed = f", resuming {state.advanced / 86400:.1f} estate days in" if state.advanced else ""
    out.print(
        f"starting the sandbox estate: scale {options.scale:g}, seed {options.seed}, "
        f"clock x{options.speedup:g}{resumed}"
    )
    with sandbox_process(options, state) as sandbox:
        clock = SandboxClock(sandbox.urls["stripe"])
        settings = demo_settings(sandbox, key_file, options)
        db = Store(settings.store_url)
        with ExitStack() as children:
            monitoring: dict[str, str] = {}
            if options.with_prometheus:
                monitoring = children.enter_context(
                    prometheus_processes(settings, options, directory)
                )
                settings = demo_settings(
                    sandbox, key_file, options, alertmanager_url=monitoring["alertmanager"]
                )
            _run(options, out, settings, db, clock, state, sandbox, monitoring, children)
    out.print("demo stopped")


def _run(
    options: DemoOptions,
    out: Console,
    settings: Settings,
    db: Store,
    clock: SandboxClock,
    state: DemoState,
    sandbox: ChildSandbox,
    monitoring: dict[str, str],
    children: ExitStack,
) -> None:
    """What `o2c run` runs, on the demo's clock, with the console beside it."""
    from collector import CollectorMetrics
    from o2c import collect as wiring
    from o2c.run import Periodic, add_jobs, build_jobs

    try:
        upgrade(db.engine)
        collector = wiring.build_collector(settings, db, metrics=CollectorMetrics())
        jobs = build_jobs(settings, db, streams=collector.streams(), clock=clock)

        async def save_state() -> str:
            now = await asyncio.to_thread(clock)
            state.save(now)
            return f"estate clock at {now:%Y-%m-%d %H:%M}"

        jobs.append(Periodic("demo clock", 15.0, save_state, first_delay=15.0))
        if options.console:
            children.enter_context(console_process(settings, options.console_port))
        _print_urls(out, settings, options, sandbox)
        for name, url in monitoring.items():
            out.print(f"{name:<8} {url}")
        try:
            wiring.run_forever(collector, settings, out, add_jobs=add_jobs(jobs))
        finally:
            if collector.ownership is not None:
                collector.ownership.close()
    finally:
        db.dispose()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_urls(out: Console, settings: Settings, options: DemoOptions, sb: ChildSandbox) -> None:
    host = settings.console.address
    if options.console:
        out.print(f"console  http://{host}:{options.console_port}/")
    if options.metrics_port:
        out.print(
            f"metrics  http://{settings.collector.metrics_host}:{options.metrics_port}/metrics"
        )
    out.print(f"store    {masked_url(settings.store_url)}")
    for vendor, url in sb.urls.items():
        out.print(f"sandbox  {vendor:<10} {url}")


@contextmanager
def prometheus_processes(
    settings: Settings, options: DemoOptions, directory: Path
) -> Iterator[dict[str, str]]:
    """Prometheus (scraping /metrics, evaluating the project's rules) and Alertmanager, as children.

    Alertmanager gets the example configuration with its receivers emptied: the demo shows the
    alerts in Alertmanager's UI without sending notifications anywhere.
    """
    import shutil

    import yaml

    from alerts import ALERTMANAGER_EXAMPLE, RULES_DIR

    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if prometheus is None or alertmanager is None:
        raise ConfigError(
            "--with-prometheus needs the prometheus and alertmanager binaries on PATH "
            "(Debian: apt install prometheus prometheus-alertmanager)"
        )
    if not options.metrics_port:
        raise ConfigError("--with-prometheus needs /metrics: set --metrics-port to a port")
    host = "127.0.0.1"
    am_address = f"{host}:{options.alertmanager_port}"
    am_config = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    am_config["receivers"] = [{"name": r["name"]} for r in am_config.get("receivers", [])]
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(am_config, sort_keys=False))
    prom_config = {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [str(path) for path in sorted(RULES_DIR.glob("*.yml"))],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_address]}]}]},
        "scrape_configs": [
            {
                "job_name": "o2c",
                "static_configs": [{"targets": [f"{host}:{options.metrics_port}"]}],
            }
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(prom_config, sort_keys=False))
    log_file = (directory / "prometheus.log").open("ab")
    children = []
    try:
        children.append(
            subprocess.Popen(
                [
                    alertmanager,
                    f"--config.file={directory / 'alertmanager.yml'}",
                    f"--storage.path={directory / 'alertmanager-data'}",
                    f"--web.listen-address={am_address}",
                    "--cluster.listen-address=",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        children.append(
            subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={directory / 'prometheus-data'}",
                    f"--web.listen-address={host}:{options.prometheus_port}",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        yield {
            "prometheus": f"http://{host}:{options.prometheus_port}",
            "alertmanager": f"http://{am_address}",
        }
    finally:
        for child in reversed(children):
            stop_child(child)
        log_file.close()
