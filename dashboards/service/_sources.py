"""Sources: probe health and freshness per system and stream, quota use and completeness from the
collector's /metrics, and the quarantine (raw payload and reason of every rejected record).

Completeness findings are in the store (the collector keeps the latest per stream); quota use
lives only in the running collector, which exports it as a metric, so it is read from its
``/metrics`` when a URL is configured; when that cannot be reached the page says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import polars as pl
from prometheus_client.parser import text_string_to_metric_families

import store
from dashboards.service._auth import User, require

_COLLECTOR_METRICS = {
    "o2c_probe_quota_used_ratio": "quota_used_ratio",
    "o2c_completeness_mismatch_records": "completeness_mismatch_records",
    "o2c_completeness_last_check_timestamp_seconds": "completeness_checked_at",
    "o2c_completeness_findings": "completeness_findings",
}
METRIC_SCHEMA: dict[str, pl.DataType] = {
    "metric": pl.String(),
    "system": pl.String(),
    "stream": pl.String(),
    "value": pl.Float64(),
}


@dataclass(frozen=True)
class CollectorMetrics:
    """Quota use and completeness as the collector last exported them (or why they are missing)."""

    url: str | None
    samples: pl.DataFrame
    """Columns METRIC_SCHEMA; ``metric`` is quota_used_ratio, completeness_mismatch_records, ..."""
    error: str | None = None


@dataclass(frozen=True)
class Sources:
    """The sources page's data."""

    systems: pl.DataFrame
    """Per system: last attempt, last success, freshness_minutes."""
    streams: pl.DataFrame
    """Per (system, stream): runs, last status and error, last success, records, quarantined."""
    quarantine: pl.DataFrame
    """Per (system, stream): quarantined records and the newest one's time."""
    completeness: pl.DataFrame
    """The latest completeness finding per (system, stream): source against store counts."""
    collector: CollectorMetrics


@dataclass(frozen=True)
class QuarantinedRecord:
    """One rejected record: why, and the payload as received (decoded for reading)."""

    id: int
    source_system: str
    stream: str
    source_id: str | None
    reason: str
    received_at: datetime
    payload: str
    payload_is_json: bool
    payload_bytes: int


def parse_collector_metrics(text: str) -> pl.DataFrame:
    """The collector's quota and completeness samples from its Prometheus text exposition."""
    rows = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = _COLLECTOR_METRICS.get(sample.name)
            if name is not None:
                rows.append(
                    (name, sample.labels.get("system"), sample.labels.get("stream"),
                     float(sample.value))
                )  # fmt: skip
    return pl.DataFrame(rows, schema=METRIC_SCHEMA, orient="row").sort("metric", "system", "stream")


def read_collector_metrics(url: str | None, *, timeout: float = 2.0) -> CollectorMetrics:
    """Scrape the collector once; a failure is reported in ``error``, never raised."""
    empty = pl.DataFrame(schema=METRIC_SCHEMA)
    if not url:
        return CollectorMetrics(None, empty, "no collector metrics URL is configured")
    try:
        response = httpx.get(url, timeout=timeout)
        response.raise_for_status()
        return CollectorMetrics(url, parse_collector_metrics(response.text))
    except (httpx.HTTPError, ValueError) as exc:
        return CollectorMetrics(url, empty, f"collector metrics unavailable at {url}: {exc}")


def sources(
    db: store.Store, user: User, *, metrics_url: str | None, now: datetime | None = None
) -> Sources:
    """Probe health, freshness, quota, completeness and the quarantine summary."""
    require(user, "read")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with db.begin() as conn:
        systems = store.read_probe_health(conn, as_of=now)
        streams = store.read_stream_health(conn)
        quarantine = store.read_quarantine_summary(conn)
        completeness = store.read_completeness_findings(conn)
    systems = systems.with_columns(
        ((pl.lit(now) - pl.col("last_success_at")).dt.total_seconds() / 60)
        .round(1)
        .alias("freshness_minutes")
    )
    return Sources(systems, streams, quarantine, completeness, read_collector_metrics(metrics_url))


def decode_payload(raw: bytes) -> tuple[str, bool]:
    """(text to show, whether it is JSON): pretty JSON when it parses, else the text as received
    (undecodable bytes shown as escapes, so a mis-encoded body is visible as such)."""
    text = raw.decode("utf-8", errors="backslashreplace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False), True
    except ValueError:
        return text, False


def quarantined(
    db: store.Store, user: User, *, source_system: str | None = None, limit: int = 100
) -> list[QuarantinedRecord]:
    """The newest quarantined records (of one system, or all), with their payloads."""
    require(user, "read")
    items = []
    for record in db.list_quarantine(source_system=source_system, limit=limit):
        text, is_json = decode_payload(record.raw_payload)
        items.append(
            QuarantinedRecord(
                id=record.id, source_system=record.source_system, stream=record.stream,
                source_id=record.source_id, reason=record.reason,
                received_at=record.received_at, payload=text, payload_is_json=is_json,
                payload_bytes=len(record.raw_payload),
            )
        )  # fmt: skip
    return items
