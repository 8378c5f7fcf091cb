"""Benchmark: a full read of each vendor's biggest stream through its probe, sandbox on loopback.

Run: .venv/bin/python -P bench/probe_read.py [--scale 0.2] [--seed 11]   (-P: bench/sandbox.py
must not shadow the sandbox package)
Prints records, requests, wall seconds, records/s and records per CPU-second of this process
(the probe's own cost: HTTP client, JSON, mapping; the simulators run in threads of the same
process, so CPU time includes them too). No store is involved: bench/ingest.py measures end to
end. Figures vary with machine load; run on an idle machine for comparable numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from probes import (
    PROBES,
    KantataConfig,
    NetSuiteConfig,
    ProbeConfig,
    ProbeSettings,
    SalesforceConfig,
    StripeConfig,
    build_client,
)
from sandbox.estate import Estate
from sandbox.server import Sandbox, serve

STREAMS = (
    ("salesforce", "opportunities"),
    ("kantata", "time_entries"),
    ("netsuite", "invoices"),
    ("stripe", "invoices"),
)


def configs(sb: Sandbox) -> dict[str, ProbeConfig]:
    creds = sb.credentials
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "salesforce": SalesforceConfig(
            sb.urls["salesforce"],
            creds["salesforce"]["client_id"],
            creds["salesforce"]["client_secret"],
            verify=str(sb.ca_file),
        ),
        "kantata": KantataConfig(f"{sb.urls['kantata']}/api/v1", creds["kantata"]["access_token"]),
        "netsuite": NetSuiteConfig(
            f"{sb.urls['netsuite']}/services/rest", creds["netsuite"]["client_id"], "bench", pem
        ),
        "stripe": StripeConfig(sb.urls["stripe"], creds["stripe"]["secret_key"]),
    }


async def run(sb: Sandbox) -> None:
    settings = ProbeSettings()
    for system, stream in STREAMS:
        config = configs(sb)[system]
        async with build_client(config, settings) as client:
            probe = PROBES[system](client, config, settings=settings)
            wall, cpu = time.perf_counter(), time.process_time()
            records = 0
            async for page in probe.read(stream, None):
                records += page.records_read
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"{system}/{stream}: {records} records, {probe.stats.requests} requests, "
            f"{wall:.2f} s, {records / wall:,.0f} records/s, {records / cpu:,.0f} records/CPU-s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    estate = Estate.generate(seed=args.seed, scale=args.scale)
    with serve(estate) as sb:
        asyncio.run(run(sb))


if __name__ == "__main__":
    main()
