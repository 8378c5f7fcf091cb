"""Fixtures for the sandbox tests: a small estate served once per session on loopback.

The API, fault and vendor-client tests WRITE to this session estate (upserts, creates, touched
modified stamps); a test that needs the untouched generated firm should build its own estate.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox.estate import Estate
from sandbox.server import Sandbox, serve


@pytest.fixture(scope="session")
def estate() -> Estate:
    """A small generated firm (~900 opportunities, ~11k time entries), shared by the session."""
    return Estate.generate(seed=7, scale=0.05)


@pytest.fixture(scope="session")
def sandbox(estate: Estate) -> Iterator[Sandbox]:
    with serve(estate) as running:
        yield running


@pytest.fixture
def faults(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox with every fault rule cleared before and after the test."""
    for sim in sandbox.simulators.values():
        sim.faults.reset()
    yield sandbox
    for sim in sandbox.simulators.values():
        sim.faults.reset()


@pytest.fixture
def sf_token(sandbox: Sandbox) -> str:
    creds = sandbox.credentials["salesforce"]
    response = httpx.post(
        f"{sandbox.urls['salesforce']}/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(creds["client_id"], creds["client_secret"]),
        verify=str(sandbox.ca_file),
    )
    response.raise_for_status()
    return response.json()["access_token"]
