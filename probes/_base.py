"""The probe interface: the Probe ABC, what it yields (Page), its settings, configs and errors.

A probe reads one vendor's changes since a cursor as pages of canonical records and writes back
for resyncs. The collector drives it; the store writes each page in one transaction::

    probe = SalesforceProbe(client, SalesforceConfig(...), settings=ProbeSettings())
    async for page in probe.read("opportunities", store.read_cursor("salesforce", "opportunities")):
        store.ingest(page.to_batch(probe_run_id=run_id))     # records + quarantine + cursor together
        if page.partial:                                      # stopped early on purpose (budget)
            break

Error tree (all raised at the probe boundary with ``raise ... from exc``; every error carries the
``system`` and, where known, the ``stream`` and ``source_id`` it is about)::

    O2CError (store)
    └── ProbeError                  a probe could not complete a call
        ├── ProbeTimeout            the vendor did not answer in time, after retries
        ├── ProbeUnavailable        5xx or connection failures persisted after retries
        ├── ProbeRateLimited        429 (or a vendor's rate signal) persisted after retries
        ├── ProbeQuotaExhausted     a daily/org budget is used up: stop until it resets
        ├── ProbeAuthError          credentials refused (even after one token refresh)
        └── ProbeResponseError      the vendor answered, but not with what we can use
            ├── ProbeMalformedPage  a body that is not the JSON envelope (after retries)
            ├── ProbeNotFound       the record or resource does not exist
            └── ProbeConflict       a write conflicted (idempotency key reuse, >1 match)

``transient`` says whether the same call may succeed later (the collector retries the cycle);
it never says the page was empty: a failed read raises, it never ends as an empty success.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import polars as pl

from store import CursorAdvance, IngestBatch, O2CError, QuarantineItem

# --------------------------------------------------------------------------- errors


class ProbeError(O2CError):
    """A probe could not complete a call to its vendor."""

    transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        system: str,
        stream: str | None = None,
        source_id: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.system = system
        self.stream = stream
        self.source_id = source_id
        self.status_code = status_code


class ProbeTimeout(ProbeError):
    """The vendor did not answer within the time-out, on every attempt."""

    transient = True


class ProbeUnavailable(ProbeError):
    """Server errors or connection failures persisted through every retry."""

    transient = True


class ProbeRateLimited(ProbeError):
    """The vendor kept answering 429 (or its own rate signal) through every retry."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **ids: Any) -> None:
        super().__init__(message, **ids)
        self.retry_after = retry_after


class ProbeQuotaExhausted(ProbeError):
    """A daily or org-wide budget is used up (or nearly): no more calls until it resets."""

    transient = True

    def __init__(
        self, message: str, *, used: int | None = None, limit: int | None = None, **ids: Any
    ) -> None:
        super().__init__(message, **ids)
        self.used = used
        self.limit = limit


class ProbeAuthError(ProbeError):
    """The vendor refused our credentials (after one token refresh where tokens expire)."""


class ProbeResponseError(ProbeError):
    """The vendor answered, but with an error or a body we cannot use."""


class ProbeMalformedPage(ProbeResponseError):
    """A page body was not the vendor's JSON envelope (truncated, not JSON), on every attempt."""

    transient = True


class ProbeNotFound(ProbeResponseError):
    """The record or resource asked for does not exist at the vendor."""


class ProbeConflict(ProbeResponseError):
    """A write conflicted: an idempotency key reused with other parameters, or several matches."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class RetrySettings:
    """Which failures are retried, how often and how long to wait (exponential backoff + jitter).

    Only transient failures are retried: time-outs, connection errors, 5xx, 429, a vendor's
    rate signal, and malformed bodies (a truncated page is a transport failure). A ``Retry-After``
    header replaces the computed backoff, capped at ``max_retry_after``.
    """

    attempts: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 20.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_retry_after: float = 60.0

    def backoff(self, attempt: int, rng: float) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return base + self.jitter * base * rng


@dataclass(frozen=True)
class TimeoutSettings:
    """httpx time-outs in seconds: explicit for every phase of a request."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 10.0

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@dataclass(frozen=True)
class ProbeSettings:
    """What every probe shares: retries, time-outs, page size and the cursor lookback."""

    retry: RetrySettings = field(default_factory=RetrySettings)
    timeout: TimeoutSettings = field(default_factory=TimeoutSettings)
    page_size: int | None = None
    """Records per request; None = the vendor's maximum (SF 2000, Kantata 200, NS 1000, Stripe 100)."""
    lookback: timedelta = timedelta(minutes=5)
    """Overlap re-read below the cursor to catch records committed late with an older stamp."""
    concurrency: int = 4
    """Requests one read may have in flight where the vendor's pages are addressable (Kantata
    page/per_page inside a bounded time window); pages are still yielded in order."""


# --------------------------------------------------------------------------- vendor configs


@dataclass(frozen=True)
class SalesforceConfig:
    """Salesforce: OAuth client credentials against the org's My Domain (``instance_url``)."""

    instance_url: str
    client_id: str
    client_secret: str = field(repr=False)
    api_version: str = "59.0"
    verify: str | bool = True
    budget_reserve: float = 0.10
    """Fraction of the daily API budget left untouched: a cycle stops as partial at the reserve."""


@dataclass(frozen=True)
class KantataConfig:
    """Kantata OX: a long-lived bearer token of a registered application."""

    base_url: str
    token: str = field(repr=False)
    verify: str | bool = True


@dataclass(frozen=True)
class NetSuiteConfig:
    """NetSuite: OAuth 2.0 client credentials (M2M) with a JWT assertion signed by our key."""

    base_url: str
    """https://<account>.suitetalk.api.netsuite.com/services/rest (or the sandbox's)."""
    client_id: str
    certificate_id: str
    private_key_pem: str = field(repr=False)
    """PEM of the private key whose certificate is registered (RSA: PS256; EC: ES256)."""
    account: str | None = None
    verify: str | bool = True


@dataclass(frozen=True)
class StripeConfig:
    """Stripe: a secret or restricted key."""

    api_base: str
    api_key: str = field(repr=False)
    verify: str | bool = True


ProbeConfig = SalesforceConfig | KantataConfig | NetSuiteConfig | StripeConfig


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Page:
    """One page of a stream: canonical frames by entity, quarantine, and the safe cursor.

    ``cursor`` is safe to store only once this page's records are written (``to_batch`` puts
    both in one transaction); None means "do not move the cursor". ``records_read`` counts the
    vendor records the page passes on, quarantined ones included (a record the probe already
    passed on earlier in the same read is dropped, not counted). ``partial`` is set on the last page when the probe stopped
    early on purpose (e.g. the Salesforce daily budget reserve): the cycle is a partial success.
    """

    system: str
    stream: str
    frames: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    quarantine: tuple[QuarantineItem, ...] = ()
    cursor: str | None = None
    records_read: int = 0
    partial: str | None = None

    @property
    def records(self) -> int:
        """Canonical rows on the page (all entities)."""
        return sum(f.height for f in self.frames.values())

    def to_batch(self, probe_run_id: int | None = None) -> IngestBatch:
        """The store batch that writes this page's records, quarantine and cursor together."""
        advance = (
            CursorAdvance(self.system, self.stream, self.cursor)
            if self.cursor is not None
            else None
        )
        return IngestBatch(
            frames=dict(self.frames),
            quarantine=self.quarantine,
            cursor=advance,
            probe_run_id=probe_run_id,
        )


@dataclass(frozen=True)
class SourceCount:
    """What the source says it holds for one stream: the completeness check's left side.

    ``records`` counts live (not deleted) records of ``entity`` from this system;
    ``amount_minor`` sums ``amount_column`` per currency where the API offers it (else None).
    """

    system: str
    stream: str
    entity: str
    records: int
    amount_column: str | None = None
    amount_minor: Mapping[str, int] | None = None
    observed_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Quota:
    """A vendor's budget as last reported (Salesforce ``Sforce-Limit-Info``)."""

    used: int
    limit: int

    @property
    def fraction(self) -> float:
        return self.used / self.limit if self.limit else 1.0


@dataclass(frozen=True)
class Health:
    """The result of a health check: reachable and authenticated, how fast, and any quota."""

    system: str
    ok: bool
    latency_seconds: float
    detail: str = ""
    quota: Quota | None = None
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class WriteResult:
    """The outcome of an idempotent resync write."""

    system: str
    object: str
    source_id: str
    created: bool
    """False when the record already existed (found before create, upserted, or replayed)."""
    external_id: str | None = None
    replayed: bool = False
    """The vendor replayed a stored response (Stripe ``Idempotent-Replayed``)."""


@dataclass
class RequestStats:
    """Counters of one probe instance (requests include retries)."""

    requests: int = 0
    retries: int = 0
    token_refreshes: int = 0


# --------------------------------------------------------------------------- the interface


class Probe(ABC):
    """One vendor's probe. Subclasses set ``system`` and ``streams`` and implement the reads.

    The HTTP client is injected (time-outs, TLS and instrumentation belong to whoever builds it,
    see ``build_client``); the probe owns auth, retries, paging, cursors and mapping.
    """

    system: ClassVar[str]
    streams: ClassVar[tuple[str, ...]]
    entities: ClassVar[Mapping[str, str]]
    """Stream -> the canonical entity it feeds (its main one; see MAPPING.md)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        config: Any,
        *,
        settings: ProbeSettings | None = None,
        tracer_provider: Any | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.settings = settings or ProbeSettings()
        self.tracer_provider = tracer_provider
        self.stats = RequestStats()
        self.quota: Quota | None = None

    @abstractmethod
    def read(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        """Pages of changes since ``cursor`` (None: everything), oldest first.

        Each page's ``cursor`` covers exactly the records of that page and those before it.
        Raises a ProbeError when a page cannot be read; never ends early without saying so.
        """

    @abstractmethod
    async def count(self, stream: str) -> SourceCount:
        """The source's own count (and amount sum where offered) of the stream's records."""

    @abstractmethod
    async def health(self) -> Health:
        """One cheap authenticated call; never raises (a failure is ``ok=False``)."""

    @abstractmethod
    async def refetch(self, stream: str, source_id: str) -> Page:
        """One record, read again now, as a page without a cursor (a resync of stale data).

        Raises ProbeNotFound when the vendor no longer has the record.
        """

    def check_stream(self, stream: str) -> None:
        if stream not in self.streams:
            raise ProbeError(
                f"{self.system} has no stream {stream!r}; streams: {', '.join(self.streams)}",
                system=self.system,
                stream=stream,
            )


# --------------------------------------------------------------------------- cursors


def encode_cursor(**parts: Any) -> str:
    """A cursor is compact JSON: readable in the store, stable across versions of a probe."""
    return json.dumps(parts, separators=(",", ":"), sort_keys=True, default=str)


def decode_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- client


def build_client(
    config: ProbeConfig,
    settings: ProbeSettings | None = None,
    *,
    tracer_provider: Any | None = None,
) -> httpx.AsyncClient:
    """The AsyncClient a probe is given: explicit time-outs, TLS as configured, traced requests.

    Request spans come from opentelemetry-instrumentation-httpx on this client only (never the
    global httpx); without a tracer provider they go to the global one, which is a no-op until
    ``o2c`` configures an exporter.
    """
    settings = settings or ProbeSettings()
    client = httpx.AsyncClient(
        timeout=settings.timeout.httpx(),
        verify=config.verify,
        limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
        headers={"User-Agent": "o2c-monitor-probe/0.1"},
    )
    from probes._telemetry import instrument_client

    instrument_client(client, tracer_provider)
    return client
