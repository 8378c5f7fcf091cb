"""Per-transaction stuck alerts: the break register's stuck breaks pushed to Alertmanager's API v2.

Which breaks are stuck transactions is an explicit table (``STUCK_BREAKS``): the hand-off breaks
where a deal, its work or its invoice waits at a chain stage for the next system. Each cycle of
the long-running process calls ``push_stuck_alerts``:

- every *active* stuck break (new, open, reopened) is posted as a firing alert with
  ``endsAt = now + resend_ttl``: re-sent each cycle while it lasts, and if this process stops
  re-sending (it died, or the break vanished some other way) Alertmanager resolves it by itself
  when that time passes;
- every stuck break that left the active statuses (resolved by a run, or accepted by an
  operator) within ``resolved_for`` is posted with ``endsAt`` = when it left, so Alertmanager
  resolves it at once (and re-sent for that window, as Alertmanager's client guidance asks).

All of it is derived from the break register on every call, never from this process's memory,
so a restart loses nothing. Failures to reach Alertmanager are logged and reported in the
returned ``PushReport``, never raised: an alerting outage must not stop the process.

Labels are bounded (``alertname``, ``category``, ``stage``, ``break_type``, ``severity``,
``system``, ``systems``, ``legal_entity``) plus ``break_id``: Alertmanager identifies an alert by
its label set, so one label must tell two stuck deals apart or they would collapse into one alert
(and resolving one would resolve the other). ``break_id`` is the break's stable hash, not a
vendor id, and it never reaches Prometheus. The deal, project or invoice ids, the amount and
the age are annotations; ``generatorURL`` opens the break in the console.
"""

from __future__ import annotations

import json
import logging
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import polars as pl

import store
from reconciler import ACTIVE_STATUSES, Systems

log = logging.getLogger(__name__)

ALERTNAME = "O2CTransactionStuck"
DATA_BREAK = "data_break"
ENGINE_HEALTH = "engine_health"
RUNBOOK = "docs/runbooks/transaction-stuck.md"


@dataclass(frozen=True)
class StuckBreak:
    """A break type that is a stuck transaction: the chain stage it waits at and the role of the
    system it waits for (that system is involved even though it holds no record yet)."""

    stage: str
    waits_for: str


STUCK_BREAKS: dict[str, StuckBreak] = {
    "won_deal_without_project": StuckBreak("won", "psa"),
    "customer_missing_in_erp": StuckBreak("won", "erp"),
    "approved_time_not_invoiced": StuckBreak("project_active", "psa"),
    "completed_milestone_not_invoiced": StuckBreak("project_active", "psa"),
    "invoice_missing_in_erp": StuckBreak("invoiced", "erp"),
    "invoice_missing_in_billing": StuckBreak("invoiced", "billing"),
}
"""Break types pushed as per-transaction stuck alerts, with their stage."""

SEVERITY: dict[str, str] = {"critical": "critical", "high": "critical", "medium": "warning",
                            "low": "info"}  # fmt: skip
"""Break severity -> alert severity (critical pages, warning tickets, info is not routed)."""


@dataclass(frozen=True)
class PushReport:
    """What one push sent: firing and resolved alerts, and the error if Alertmanager refused."""

    firing: int = 0
    resolved: int = 0
    requests: int = 0
    error: str | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _amount(minor: int | None, currency: str | None) -> str:
    if minor is None or currency is None:
        return "n/a"
    return f"{store.from_minor(minor, currency):,} {currency}"


def _ids(records: str) -> str:
    try:
        items = json.loads(records)
        return ", ".join(f"{r['entity']} {r['system']}:{r['id']}" for r in items)
    except (ValueError, KeyError, TypeError):
        return records


def build_alerts(
    breaks: pl.DataFrame,
    *,
    now: datetime,
    sent_at: datetime,
    resend_ttl: timedelta,
    console_url: str,
    systems: Systems | None = None,
) -> list[dict[str, Any]]:
    """The Alertmanager v2 alert objects of these register rows (pure; see the module doc)."""
    roles = systems or Systems()
    console = console_url.rstrip("/")
    alerts = []
    for row in breaks.iter_rows(named=True):
        kind = STUCK_BREAKS.get(row["break_type"])
        if kind is None:
            continue
        active = row["status"] in ACTIVE_STATUSES
        primary = row["key"].split(":")[1] if row["key"].count(":") >= 2 else ""
        involved = {s for s in (row["systems"] or "").split(",") if s}
        involved.add(getattr(roles, kind.waits_for))
        since = row["since"] or row["first_detected_at"]
        age_days = max(0.0, (now - since).total_seconds() / 86_400)
        starts = row["status_since"] if row["status"] == "reopened" else row["first_detected_at"]
        ends = sent_at + resend_ttl if active else min(row["status_since"], sent_at)
        starts = min(starts, ends, sent_at)
        amount = _amount(row["amount_minor"], row["currency"])
        alerts.append(
            {
                "labels": {
                    "alertname": ALERTNAME,
                    "category": DATA_BREAK,
                    "stage": kind.stage,
                    "break_type": row["break_type"],
                    "severity": SEVERITY.get(row["severity"], "warning"),
                    "system": primary,
                    "systems": ",".join(sorted(involved)),
                    "legal_entity": row["legal_entity"] or "none",
                    "break_id": row["break_id"],
                },
                "annotations": {
                    "summary": f"Stuck at {kind.stage}: {row['break_type'].replace('_', ' ')} "
                    f"({amount}, {age_days:.0f} days)",
                    "description": row["detail"] or "",
                    "records": _ids(row["records"]),
                    "amount": amount,
                    "age_days": f"{age_days:.1f}",
                    "since": _rfc3339(since),
                    "status": row["status"],
                    "runbook_url": RUNBOOK,
                },
                "startsAt": _rfc3339(starts),
                "endsAt": _rfc3339(ends),
                "generatorURL": f"{console}/breaks?break={row['break_id']}",
            }
        )
    return alerts


def push_stuck_alerts(
    db: store.Store,
    alertmanager_url: str,
    *,
    console_url: str,
    now: datetime | None = None,
    resend_ttl: timedelta = timedelta(minutes=15),
    resolved_for: timedelta = timedelta(minutes=15),
    systems: Systems | None = None,
    client: httpx.Client | None = None,
    batch_size: int = 500,
) -> PushReport:
    """Post the stuck breaks' alerts to Alertmanager (``POST /api/v2/alerts``); never raises.

    ``now`` is the business clock the register was reconciled at (the wall clock by default):
    it picks the recently ended breaks and measures ages. Alertmanager's own times (``endsAt``
    of firing alerts) always use the wall clock. Call it at least every ``resend_ttl / 3`` so a
    firing alert never expires between two pushes.
    """
    sent_at = datetime.now(UTC)
    now = (now or sent_at).astimezone(UTC)
    try:
        with db.begin() as conn:
            rows = store.read_alert_breaks(
                conn, list(STUCK_BREAKS), active_statuses=ACTIVE_STATUSES,
                ended_since=now - resolved_for,
            )  # fmt: skip
    except Exception as exc:  # alerting never takes the process down
        log.warning("could not read stuck breaks from the store", exc_info=True)
        return PushReport(error=f"store: {exc}")
    try:
        alerts = build_alerts(
            rows, now=now, sent_at=sent_at, resend_ttl=resend_ttl, console_url=console_url,
            systems=systems,
        )  # fmt: skip
    except Exception as exc:  # a malformed register row must not stop the process either
        log.warning("could not build the stuck alerts", exc_info=True)
        return PushReport(error=f"build: {exc}")
    firing = sum(1 for a in alerts if a["annotations"]["status"] in ACTIVE_STATUSES)
    resolved = len(alerts) - firing
    if not alerts:
        return PushReport()
    url = f"{alertmanager_url.rstrip('/')}/api/v2/alerts"
    owned = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(10.0))
    requests = 0
    error = None
    try:
        for start in range(0, len(alerts), batch_size):
            response = http.post(url, json=alerts[start : start + batch_size])
            requests += 1
            response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("Alertmanager push to %s failed: %s", url, exc)
        error = f"alertmanager: {exc}"
    finally:
        if owned:
            http.close()
    return PushReport(firing, resolved, requests, error, alerts)


def involved_systems(systems: Systems | None = None) -> tuple[str, ...]:
    """Every system a stuck alert's ``systems`` label may name (the inhibition's keys)."""
    return tuple(astuple(systems or Systems()))
