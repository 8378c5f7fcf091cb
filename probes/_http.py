"""The request loop every vendor probe shares: auth, retries with backoff and jitter, limit signals.

One place decides what is transient. Retried: time-outs, connection failures (including a write
whose answer was lost: every write we send is idempotent by construction), 5xx, 429 and the
vendor's own rate signal, and bodies that are not the JSON envelope (a truncated page is a
transport failure, never an empty page). Not retried: other 4xx, and a used-up daily budget.
``Retry-After`` replaces the computed backoff. A 401 refreshes the token once and retries.
Each attempt is logged (system, status, attempt, wait; never headers or bodies, which carry
credentials).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from probes import _telemetry
from probes._base import (
    Page,
    Probe,
    ProbeAuthError,
    ProbeConflict,
    ProbeError,
    ProbeMalformedPage,
    ProbeNotFound,
    ProbeQuotaExhausted,
    ProbeRateLimited,
    ProbeResponseError,
    ProbeTimeout,
    ProbeUnavailable,
)

log = logging.getLogger("probes.http")


@dataclass(frozen=True)
class Answer:
    """A response whose status was acceptable, with its JSON body parsed (None when empty)."""

    response: httpx.Response
    body: Any

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers


class _Retry(Exception):
    """Internal: this attempt failed transiently; wait and try again."""

    def __init__(self, error: ProbeError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class HttpProbe(Probe):
    """A Probe speaking HTTP: subclasses supply auth headers, token refresh and limit rules."""

    _rng = random.Random()

    # ------------------------------------------------------------------ hooks

    async def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a call (fetching a token first if none is held)."""
        return {}

    async def refresh_token(self) -> bool:
        """Drop the held token and get a new one; False when the vendor's tokens cannot expire."""
        return False

    def observe(self, response: httpx.Response) -> None:
        """Read limit headers every response carries (Salesforce ``Sforce-Limit-Info``)."""

    def limit_signal(self, response: httpx.Response) -> str | None:
        """'rate' (back off and retry), 'quota' (stop: budget used up) or None for this answer."""
        if response.status_code == 429:
            return "rate"
        return None

    # ------------------------------------------------------------------ reads

    def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        """The vendor-specific page loop (``read`` wraps it in the cycle span)."""
        raise NotImplementedError

    async def read(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        """Pages of changes since ``cursor``, inside one span per cycle (requests are children)."""
        self.check_stream(stream)
        span = _telemetry.start_span(
            self.tracer_provider,
            f"probe.read {self.system}/{stream}",
            **{"o2c.system": self.system, "o2c.stream": stream, "o2c.incremental": bool(cursor)},
        )
        before = self.stats.requests
        pages = records = quarantined = 0
        error: BaseException | None = None
        source = self.pages(stream, cursor)
        try:
            while True:
                with _telemetry.current(span):
                    try:
                        page = await anext(source)
                    except StopAsyncIteration:
                        break
                pages += 1
                records += page.records_read
                quarantined += len(page.quarantine)
                yield page
        except Exception as exc:
            error = exc
            raise
        finally:
            await source.aclose()  # type: ignore[attr-defined]
            _telemetry.set_attributes(
                span,
                **{
                    "o2c.pages": pages,
                    "o2c.records": records,
                    "o2c.quarantined": quarantined,
                    "o2c.requests": self.stats.requests - before,
                },
            )
            _telemetry.end_span(span, error)

    # ------------------------------------------------------------------ the loop

    async def call(
        self,
        method: str,
        url: str,
        *,
        stream: str | None = None,
        source_id: str | None = None,
        auth: bool = True,
        ok: tuple[int, ...] = (200, 201, 204),
        not_found: bool = False,
        idempotent: bool = True,
        **kwargs: Any,
    ) -> Answer:
        """One logical call, retried as the settings say; returns an Answer or raises ProbeError.

        ``not_found=True`` returns a 404 as an Answer (callers that look a record up before
        creating it) instead of raising ProbeNotFound. ``idempotent=False`` (a create without
        an idempotency key) is not retried after a time-out, a lost answer or a 5xx, because it
        may have been applied: the caller looks the record up before trying again.
        """
        retry = self.settings.retry
        ids: dict[str, Any] = {"system": self.system, "stream": stream, "source_id": source_id}
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(
                    method, url, auth=auth, ok=ok, not_found=not_found, ids=ids, **kwargs
                )
            except _Unauthorized as exc:
                if refreshed or not await self._refresh():
                    raise ProbeAuthError(
                        f"{self.system}: credentials refused ({exc.status})",
                        status_code=exc.status,
                        **ids,
                    ) from None
                refreshed = True
                attempt -= 1  # a token refresh is not a failed attempt
                continue
            except _Retry as exc:
                maybe_applied = isinstance(exc.error, ProbeTimeout | ProbeUnavailable)
                if (
                    isinstance(exc.error, ProbeQuotaExhausted)
                    or attempt >= retry.attempts
                    or (maybe_applied and not idempotent)
                ):
                    raise exc.error from exc.__cause__
                wait = (
                    min(exc.retry_after, retry.max_retry_after)
                    if exc.retry_after is not None
                    else retry.backoff(attempt, self._rng.random())
                )
                self.stats.retries += 1
                log.warning(
                    "%s %s %s: %s; attempt %d/%d, retrying in %.2fs",
                    self.system,
                    method,
                    _path(url),
                    type(exc.error).__name__,
                    attempt,
                    retry.attempts,
                    wait,
                )
                await asyncio.sleep(wait)

    async def _refresh(self) -> bool:
        self.stats.token_refreshes += 1
        return await self.refresh_token()

    async def _attempt(
        self,
        method: str,
        url: str,
        *,
        auth: bool,
        ok: tuple[int, ...],
        not_found: bool,
        ids: Mapping[str, Any],
        **kwargs: Any,
    ) -> Answer:
        headers = dict(kwargs.pop("headers", None) or {})
        if auth:
            headers.update(await self.auth_headers())
        self.stats.requests += 1
        try:
            response = await self.client.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise _Retry(
                ProbeTimeout(f"{self.system}: no answer in time ({exc!r})", **ids)
            ) from exc
        except httpx.TransportError as exc:
            raise _Retry(
                ProbeUnavailable(f"{self.system}: connection failed ({type(exc).__name__})", **ids)
            ) from exc
        self.observe(response)
        status = response.status_code
        signal = self.limit_signal(response)
        if signal == "quota":
            quota = self.quota
            raise _Retry(
                ProbeQuotaExhausted(
                    f"{self.system}: API budget used up",
                    used=quota.used if quota else None,
                    limit=quota.limit if quota else None,
                    status_code=status,
                    **ids,
                )
            )
        if signal == "rate":
            after = retry_after_seconds(response)
            raise _Retry(
                ProbeRateLimited(
                    f"{self.system}: rate limited ({status})",
                    retry_after=after,
                    status_code=status,
                    **ids,
                ),
                retry_after=after,
            )
        if status == 401 and auth:
            raise _Unauthorized(status)
        if status >= 500:
            raise _Retry(
                ProbeUnavailable(
                    f"{self.system}: server error {status}", status_code=status, **ids
                ),
                retry_after=retry_after_seconds(response),
            )
        if status == 404 and not_found:
            return Answer(response, _json_or_none(response))
        if status not in ok:
            raise _client_error(self.system, response, ids)
        if not response.content:
            return Answer(response, None)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise _Retry(
                ProbeMalformedPage(
                    f"{self.system}: response body is not JSON ({len(response.content)} bytes)",
                    status_code=status,
                    **ids,
                )
            ) from exc
        return Answer(response, body)


class _Unauthorized(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _client_error(system: str, response: httpx.Response, ids: Mapping[str, Any]) -> ProbeError:
    status = response.status_code
    detail = _error_detail(response)
    message = f"{system}: {response.request.method} {_path(str(response.request.url))} -> {status}"
    if detail:
        message += f": {detail}"
    if status == 404:
        return ProbeNotFound(message, status_code=status, **ids)
    if status in (300, 409) or "idempotency" in detail.lower():
        return ProbeConflict(message, status_code=status, **ids)
    if status == 403:
        return ProbeAuthError(message, status_code=status, **ids)
    return ProbeResponseError(message, status_code=status, **ids)


def _error_detail(response: httpx.Response) -> str:
    """The vendor's own error message, whatever its envelope (never the request's headers)."""
    body = _json_or_none(response)
    if isinstance(body, list) and body and isinstance(body[0], dict):  # Salesforce
        return f"{body[0].get('errorCode', '')} {body[0].get('message', '')}".strip()
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):  # Stripe
            err = body["error"]
            return f"{err.get('type', '')} {err.get('message', '')}".strip()
        if "o:errorDetails" in body:  # NetSuite
            details = body.get("o:errorDetails") or [{}]
            return f"{details[0].get('o:errorCode', '')} {details[0].get('detail', '')}".strip()
        if isinstance(body.get("errors"), list) and body["errors"]:  # Kantata
            first = body["errors"][0]
            return f"{first.get('type', '')} {first.get('message', '')}".strip()
        if "error" in body:  # OAuth
            return f"{body.get('error')} {body.get('error_description', '')}".strip()
    return ""


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return None


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _path(url: str) -> str:
    # Log the path only: query strings can be long (SOQL) and hosts are in the span anyway.
    return httpx.URL(url).path


def monotonic() -> float:
    return time.monotonic()
