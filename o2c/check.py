"""`o2c check` and the start-up preflight: is the store reachable, and can every enabled system be reached?

A wrong URL or credential should cost one clear line at start-up, not an hour of failed cycles
discovered on a dashboard. Each problem is one line naming the system, what went wrong and the
settings to look at.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from o2c.collect import probe_settings, vendor_config
from o2c.settings import Settings
from probes import PROBES, Health, RetrySettings, build_client

_VARIABLES = {
    "salesforce": "O2C_SALESFORCE__INSTANCE_URL, __CLIENT_ID and __CLIENT_SECRET",
    "kantata": "O2C_KANTATA__BASE_URL and O2C_KANTATA__TOKEN",
    "netsuite": "O2C_NETSUITE__BASE_URL (or __ACCOUNT), __CLIENT_ID and __CERTIFICATE_ID",
    "stripe": "O2C_STRIPE__API_BASE and O2C_STRIPE__API_KEY",
}


async def _health(settings: Settings, system: str, patience: float) -> Health:
    config = vendor_config(system, settings)
    # One quick attempt: a preflight reports what is wrong now, it does not wait out an outage.
    shared = probe_settings(settings)
    shared = replace(shared, retry=RetrySettings(attempts=1, initial_backoff=0.1, max_backoff=0.1))
    client = build_client(config, shared)
    client.timeout = min(patience, settings.collector.request_timeout_seconds)
    probe = PROBES[system](client, config, settings=shared)
    try:
        return await asyncio.wait_for(probe.health(), timeout=patience)
    except TimeoutError:
        return Health(system, False, patience, f"no answer within {patience:g} s")
    finally:
        await client.aclose()


def system_problems(settings: Settings, *, timeout: float = 10.0) -> list[str]:
    """One line per enabled system that cannot be reached or refuses our credentials."""

    async def all_systems() -> list[Health]:
        systems = settings.collector.systems
        return list(await asyncio.gather(*(_health(settings, s, timeout) for s in systems)))

    problems = []
    for health in asyncio.run(all_systems()):
        if not health.ok:
            detail = " ".join(health.detail.split())[:200]
            problems.append(
                f"{health.system} is not reachable with the configured settings ({detail}); "
                f"check {_VARIABLES.get(health.system, 'its settings')}"
            )
    return problems
