"""Every panel query, as Grafana would send it, evaluated by a real Prometheus: no error, and data.

The estate is the sandbox's, served on loopback. The production collector (the one ``o2c collect``
builds, with its metrics and the exporter on one registry) syncs it into a SQLite store, checks
completeness, the reconciler runs for real, and the collector keeps polling every second while
Prometheus scrapes /metrics every second with o2c-monitor's alert rules loaded, as in production.

Grafana's substitutions are made the way Grafana makes them: ``$__rate_interval`` is 1m (or the
panel's minimum interval), ``$__range`` 1h, a template variable is ``.*`` for All or one real
value (regex-escaped) listed by the variable's own ``label_values`` query. Queries that may legitimately find no series in a
healthy estate (no probe error, no resync attempt, no quarantined record, no firing alert) are
written to read 0 instead (see grafana/_dashboards.py), so they must have data here too.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from prometheus_client import start_http_server

import alerts
import grafana
import store
from collector import CollectorMetrics
from o2c import collect as wiring
from reconciler import run_reconcile
from sandbox.estate import Estate
from sandbox.server import serve
from tests.alerts.servers import free_port, process, wait_for
from tests.alerts.test_prometheus import prom_get
from tests.grafana.promql import (
    BUILTINS,
    interpolate,
    label_values_query,
    targets,
    used_variables,
    variables,
)
from tests.reconciler.test_accuracy import _key_file, _settings
from tests.system_packages import require_binaries

SCALE = 0.03
"""A small estate (a few thousand records): every KPI, break type and stage still appears."""

COMMITTED = [json.loads((grafana.DASHBOARDS_DIR / name).read_text()) for name in grafana.DASHBOARDS]
"""The committed JSON, as Grafana's provisioning loads it (a test keeps it equal to the code's)."""


@dataclass(frozen=True)
class PanelQuery:
    dashboard: dict[str, Any]
    panel: dict[str, Any]
    target: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.dashboard['uid']}/{self.panel['title']}/{self.target['refId']}"

    @property
    def variables(self) -> set[str]:
        return used_variables(self.target["expr"]) - set(BUILTINS)


QUERIES = [PanelQuery(d, p, t) for d in COMMITTED for p, t in targets(d)]


# --------------------------------------------------------------------------- the live estate


@dataclass
class Feeder:
    """The collector's life in a thread: a full sync, a completeness check, one reconcile, then a
    cycle of every stream each second until stopped (as ``o2c run`` would, only faster)."""

    collector: Any
    db: store.Store
    as_of: Any
    ready: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    cycles: int = 0

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        thread.start()
        return thread

    async def _main(self) -> None:
        try:
            results = await self.collector.run_once(None)
            failed = [(r.system, r.stream) for r in results if not r.ok]
            assert not failed, f"sync failed for {failed}"
            await self.collector.check_completeness(None)
            await asyncio.to_thread(run_reconcile, self.db, as_of=self.as_of)
            self.ready.set()
            while not self.stopping.is_set():
                await self.collector.run_once(None)
                self.cycles += 1
                await asyncio.sleep(1)
        except BaseException as exc:
            self.error = exc
            self.ready.set()
        finally:
            await self.collector.aclose()
            if self.collector.ownership is not None:
                self.collector.ownership.close()


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus scraping the collector's /metrics over a sandbox-fed store, with data."""
    binaries = require_binaries("prometheus")
    workdir = tmp_path_factory.mktemp("grafana-live")
    db_url = f"sqlite:///{workdir / 'o2c.sqlite3'}"
    engine = store.create_store_engine(db_url)
    store.upgrade(engine)
    engine.dispose()
    db = store.Store(db_url)
    estate = Estate.generate(seed=1, scale=SCALE)
    with serve(estate) as sb:
        metrics = CollectorMetrics()
        settings = _settings(sb, _key_file(workdir), db_url)
        collector = wiring.build_collector(settings, db, metrics=metrics)
        feeder = Feeder(collector, db, estate.now)
        thread = feeder.start()
        server, server_thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
        try:
            assert feeder.ready.wait(timeout=240), "the sandbox sync did not finish in 4 minutes"
            if feeder.error is not None:
                raise feeder.error
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(p) for p in sorted(alerts.RULES_DIR.glob("*.yml"))],
                "scrape_configs": [{"job_name": "o2c", "static_configs": [
                    {"targets": [f"127.0.0.1:{server.server_port}"]}]}],
            }  # fmt: skip
            (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
            args = [binaries["prometheus"], f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
            with process(args, ready_url=f"{url}/-/ready", log=workdir / "prometheus.log"):
                # Rates need two scrapes around a cycle; the rules need one evaluation.
                wait_for(lambda: _values(url, "sum(rate(o2c_probe_cycles_total[1m])) > 0")
                         and _values(url, "ALERTS"), what="cycles scraped and rules evaluated")  # fmt: skip
                yield url
        finally:
            feeder.stopping.set()
            thread.join(timeout=60)
            server.shutdown()
            server.server_close()
            server_thread.join(timeout=5)
            db.dispose()


def _values(url: str, expr: str) -> list[float]:
    result = prom_get(url, "/api/v1/query", query=expr)["result"]
    return [float(s["value"][1]) for s in result]


def evaluate(url: str, expr: str, *, instant: bool) -> list[float]:
    """What Grafana would get: an instant query, or a range query over the last minute.
    A PromQL error fails here (HTTP 400 or status "error"); the values come back finite-only."""
    if instant:
        result = prom_get(url, "/api/v1/query", query=expr)["result"]
        values = [s["value"][1] for s in result]
    else:
        now = time.time()
        result = prom_get(url, "/api/v1/query_range", query=expr, start=str(now - 60),
                          end=str(now), step="5")["result"]  # fmt: skip
        values = [v for s in result for _, v in s["values"]]
    return [x for x in map(float, values) if math.isfinite(x)]


def variable_values(url: str, dashboard: dict[str, Any], name: str) -> list[str]:
    """What the variable's drop-down lists: its label_values query through the HTTP API."""
    metric, label = label_values_query(variables(dashboard)[name]["query"])
    values: list[str] = prom_get(url, f"/api/v1/label/{label}/values", **{"match[]": metric})
    return values


# --------------------------------------------------------------------------- the checks


@pytest.mark.parametrize(
    ("dashboard", "name"),
    [(d, v) for d in COMMITTED for v in variables(d) if v != "datasource"],
    ids=lambda x: x if isinstance(x, str) else x["uid"],
)
def test_every_template_variable_lists_real_values(
    prometheus_url: str, dashboard: dict[str, Any], name: str
) -> None:
    values = variable_values(prometheus_url, dashboard, name)
    assert values, f"{name} lists nothing"
    if name == "system":
        assert {"salesforce", "kantata", "netsuite", "stripe"} <= set(values)


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_every_panel_query_returns_data_with_all_selected(
    prometheus_url: str, query: PanelQuery
) -> None:
    expr = interpolate(query.target["expr"], dict.fromkeys(query.variables),
                       min_interval=query.panel.get("interval"))  # fmt: skip
    instant = query.target.get("instant", False)
    evaluate(prometheus_url, expr, instant=instant)  # an error fails at once
    wait_for(lambda: evaluate(prometheus_url, expr, instant=instant), timeout=20,
             what=f"data for {expr}")  # fmt: skip


PARTIAL_BY_DESIGN = {
    ("o2c-pipeline", "API quota used"): "only Salesforce reports an API quota",
    ("o2c-executive", "Project setup cycle time"): "only legal entities with a deal won and its "
    "project activated have setup times",
}
"""Panels that legitimately show nothing for some single values of a variable (and say so in
their descriptions); each must still have data for at least one value."""


@pytest.mark.parametrize(
    "query", [q for q in QUERIES if q.variables], ids=[q.id for q in QUERIES if q.variables]
)
def test_every_panel_query_runs_for_each_value_of_its_variables(
    prometheus_url: str, query: PanelQuery
) -> None:
    """One value at a time (the others All): no error, and data unless the panel is partial by
    design, in which case some value has data."""
    instant = query.target.get("instant", False)
    empty: list[str] = []
    full: list[str] = []
    for name in sorted(query.variables):
        for value in variable_values(prometheus_url, query.dashboard, name):
            chosen: dict[str, list[str] | None] = dict.fromkeys(query.variables)
            chosen[name] = [value]
            expr = interpolate(
                query.target["expr"], chosen, min_interval=query.panel.get("interval")
            )
            (full if evaluate(prometheus_url, expr, instant=instant) else empty).append(
                f"{name}={value}"
            )
    if (query.dashboard["uid"], query.panel["title"]) in PARTIAL_BY_DESIGN:
        assert full, "no value of its variables has data"
    else:
        assert empty == []
