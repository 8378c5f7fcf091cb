"""Fixtures for the probe tests: one small sandbox per session, probes built against it.

Tests that inject faults use the `faults` fixture (rules cleared before and after); tests that
write (resyncs) or move the clock use their own estate (`private_sandbox`) so that the session
estate stays the generated firm the mapping tests compare against.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import polars as pl
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from probes import (
    PROBES,
    KantataConfig,
    NetSuiteConfig,
    Page,
    Probe,
    ProbeSettings,
    RetrySettings,
    SalesforceConfig,
    StripeConfig,
    TimeoutSettings,
    build_client,
)
from sandbox.apis import FaultPlan
from sandbox.estate import Estate
from sandbox.server import Sandbox, serve

SCALE = 0.02
SEED = 11

# Fast retries and short time-outs: a hang fault must become a time-out in about a second.
FAST = ProbeSettings(
    retry=RetrySettings(attempts=4, initial_backoff=0.01, max_backoff=0.05, max_retry_after=0.1),
    timeout=TimeoutSettings(connect=2.0, read=1.5, write=2.0, pool=2.0),
    lookback=timedelta(minutes=5),
)


@pytest.fixture(scope="session")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="session")
def estate() -> Estate:
    """The generated firm the mapping tests compare against (never written to)."""
    return Estate.generate(seed=SEED, scale=SCALE)


@pytest.fixture(scope="session")
def sandbox(estate: Estate) -> Iterator[Sandbox]:
    with serve(estate) as running:
        yield running


@pytest.fixture(scope="module")
def private_sandbox() -> Iterator[Sandbox]:
    """A sandbox of the module's own (tests that write, move the clock or corrupt records)."""
    with serve(Estate.generate(seed=SEED + 1, scale=SCALE)) as running:
        yield running


@pytest.fixture
def faults(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session sandbox with every fault rule cleared before and after the test."""
    for sim in sandbox.simulators.values():
        sim.faults.reset()
    yield sandbox
    for sim in sandbox.simulators.values():
        sim.faults.reset()


def configs(sb: Sandbox, private_key_pem: str) -> dict[str, Any]:
    creds = sb.credentials
    return {
        "salesforce": SalesforceConfig(
            instance_url=sb.urls["salesforce"],
            client_id=creds["salesforce"]["client_id"],
            client_secret=creds["salesforce"]["client_secret"],
            verify=str(sb.ca_file),
        ),
        "kantata": KantataConfig(
            base_url=f"{sb.urls['kantata']}/api/v1", token=creds["kantata"]["access_token"]
        ),
        "netsuite": NetSuiteConfig(
            base_url=f"{sb.urls['netsuite']}/services/rest",
            client_id=creds["netsuite"]["client_id"],
            certificate_id="sandbox-cert",
            private_key_pem=private_key_pem,
            account=creds["netsuite"]["account"],
        ),
        "stripe": StripeConfig(api_base=sb.urls["stripe"], api_key=creds["stripe"]["secret_key"]),
    }


ProbeFactory = Callable[..., Probe]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def make_probe(sandbox: Sandbox, private_key_pem: str) -> AsyncIterator[ProbeFactory]:
    """Build a probe of a system against a sandbox (the session one unless given).

    Clients are closed in the test's own event loop, so no connection outlives its loop.
    """
    clients: list[httpx.AsyncClient] = []

    def make(system: str, sb: Sandbox | None = None, **kwargs: Any) -> Probe:
        config = configs(sb or sandbox, private_key_pem)[system]
        if "config" in kwargs:
            config = kwargs.pop("config")
        settings = kwargs.pop("settings", FAST)
        client = build_client(config, settings, tracer_provider=kwargs.get("tracer_provider"))
        clients.append(client)
        return PROBES[system](client, config, settings=settings, **kwargs)

    yield make
    for client in clients:
        await client.aclose()


async def read_all(probe: Probe, stream: str, cursor: str | None = None) -> list[Page]:
    return [page async for page in probe.read(stream, cursor)]


def rows(pages: list[Page], entity: str) -> pl.DataFrame:
    """The canonical rows of all pages, one per source id (the newest version wins)."""
    frames = [p.frames[entity] for p in pages if entity in p.frames]
    if not frames:
        return pl.DataFrame()
    return (
        pl.concat(frames)
        .sort("source_modified_at")
        .unique("source_id", keep="last", maintain_order=True)
        .sort("source_id")
    )


def inject(sb: Sandbox, system: str, *rules: dict[str, Any]) -> None:
    """Replace the fault rules of one simulator (through the sandbox's own fault injection)."""
    sb.simulators[system].faults.load(
        FaultPlan.from_obj({"seed": 3, "faults": list(rules)}), replace=True
    )


def fired(sb: Sandbox, system: str) -> int:
    return sum(r["fired"] for r in sb.simulators[system].faults.snapshot()["faults"])
