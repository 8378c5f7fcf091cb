"""The shared request loop, driven by an httpx MockTransport where the sandbox has no such fault.

Retry-After (seconds and HTTP dates) replaces the backoff, client errors are not retried, a
create without an idempotency key is not blindly repeated, and time-outs are explicit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from probes import (
    KantataConfig,
    KantataProbe,
    ProbeNotFound,
    ProbeRateLimited,
    ProbeResponseError,
    ProbeSettings,
    RetrySettings,
    build_client,
)
from probes._http import retry_after_seconds
from tests.probes.conftest import FAST, ProbeFactory, read_all

pytestmark = pytest.mark.anyio

EMPTY = {
    "count": 0,
    "meta": {"count": 0, "page_count": 1, "page_number": 1, "page_size": 200},
    "results": [],
}


def probe_with(
    handler: Callable[[httpx.Request], httpx.Response], settings: ProbeSettings = FAST
) -> KantataProbe:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return KantataProbe(
        client, KantataConfig(base_url="https://k.test/api/v1", token="t"), settings=settings
    )


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "2"})) == 2.0
    when = datetime.now(UTC) + timedelta(seconds=30)
    parsed = retry_after_seconds(
        httpx.Response(429, headers={"Retry-After": format_datetime(when)})
    )
    assert parsed is not None and 28 <= parsed <= 31
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Response(429)) is None


async def test_retry_after_replaces_the_backoff() -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "0.3"})
        return httpx.Response(200, json=EMPTY)

    settings = ProbeSettings(retry=RetrySettings(initial_backoff=0.001, max_retry_after=5))
    probe = probe_with(handler, settings)
    async with probe.client:
        await read_all(probe, "projects")
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 0.3


async def test_rate_limits_that_persist_raise_with_the_wait_asked_for() -> None:
    probe = probe_with(lambda r: httpx.Response(429, headers={"Retry-After": "0.01"}))
    async with probe.client:
        with pytest.raises(ProbeRateLimited) as raised:
            await read_all(probe, "projects")
    assert raised.value.retry_after == 0.01 and raised.value.transient
    assert probe.stats.requests == FAST.retry.attempts


@pytest.mark.parametrize(("status", "error"), [(400, ProbeResponseError), (404, ProbeNotFound)])
async def test_client_errors_are_not_retried(status: int, error: type[Exception]) -> None:
    body = {"errors": [{"type": "validation", "message": "bad filter"}]}
    probe = probe_with(lambda r: httpx.Response(status, json=body))
    async with probe.client:
        with pytest.raises(error) as raised:
            await read_all(probe, "projects")
    assert probe.stats.requests == 1
    assert "bad filter" in str(raised.value)


async def test_a_create_without_idempotency_is_looked_up_before_it_is_sent_again() -> None:
    seen: list[str] = []
    created = False

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal created
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST" and request.url.path.endswith("/workspaces.json"):
            created = True
            raise httpx.RemoteProtocolError("server closed the connection", request=request)
        if request.method == "GET" and created and "title" in request.url.params:
            return httpx.Response(
                200,
                json={
                    **EMPTY,
                    "results": [{"key": "workspaces", "id": "5"}],
                    "workspaces": {"5": {"id": "5", "title": "T 006X"}},
                },
            )
        if request.method == "POST":  # the external reference upsert
            return httpx.Response(
                200,
                json={
                    **EMPTY,
                    "results": [{"key": "external_references", "id": "9"}],
                    "external_references": {"9": {"id": "9"}},
                },
            )
        return httpx.Response(200, json=EMPTY)

    probe = probe_with(handler)
    async with probe.client:
        result = await probe.create_project("006X", title="T 006X", price_minor=1, currency="USD")
    assert (result.source_id, result.created) == ("5", True)
    assert seen.count("POST /api/v1/workspaces.json") == 1


async def test_the_built_client_has_explicit_timeouts() -> None:
    client = build_client(KantataConfig(base_url="https://k.test", token="t"), FAST)
    async with client:
        assert client.timeout.read == FAST.timeout.read
        assert client.timeout.connect == FAST.timeout.connect


async def test_salesforce_counts_carry_amount_sums_when_aggregates_are_answered() -> None:
    from probes import SalesforceConfig, SalesforceProbe

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(
                200, json={"access_token": "a", "instance_url": "https://sf.test"}
            )
        if "SUM(" in request.url.params.get("q", ""):
            return httpx.Response(
                200,
                json={
                    "totalSize": 2,
                    "done": True,
                    "records": [
                        {"CurrencyIsoCode": "USD", "total": 123450.0},
                        {"CurrencyIsoCode": "GBP", "total": 0.5},
                    ],
                },
            )
        return httpx.Response(200, json={"totalSize": 7, "done": True, "records": []})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    probe = SalesforceProbe(
        client,
        SalesforceConfig(instance_url="https://sf.test", client_id="c", client_secret="s"),
        settings=FAST,
    )
    async with client:
        count = await probe.count("opportunities")
    assert count.records == 7
    assert count.amount_column == "amount_minor"
    assert count.amount_minor == {"USD": 12_345_000, "GBP": 50}


async def test_counts_without_aggregates_in_the_api_say_so(make_probe: ProbeFactory) -> None:
    count = await make_probe("netsuite").count("invoices")
    # The sandbox's SuiteQL has no SUM: the count stands alone rather than a wrong sum.
    assert count.records > 0 and count.amount_minor is None and count.amount_column is None
