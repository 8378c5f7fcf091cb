"""Sandbox benchmark: estate generation time by scale, and records/s served over loopback HTTP.

    .venv/bin/python bench/sandbox.py                      # scales 1, 10, 40; serving at scale 10
    .venv/bin/python bench/sandbox.py --scales 1 --serve-scale 1

Serving figures walk whole objects the way a probe does: Salesforce `query/` + query locators in
2,000-record batches (Opportunity and OpportunityHistory), Stripe `/v1/invoices` and
`/v1/invoice_payments` in 100-record pages with `starting_after`. The sandbox runs in a child
process (`--in-process` to share this one); one client, keep-alive, JSON parsed with orjson on
the client side (what a probe pays too).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

if __name__ == "__main__":
    # Run as a script, this file's folder is sys.path[0] and its name shadows the sandbox package.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from sandbox.estate import Estate
from sandbox.server import serve, spawn


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def bench_generation(scale: float, seed: int) -> None:
    started = time.perf_counter()
    estate = Estate.generate(seed=seed, scale=scale)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    rows = sum(
        estate.frame(v, o).height
        for v in ("salesforce", "kantata", "netsuite", "stripe")
        for o in estate.objects(v)
    )
    materialised = time.perf_counter() - started
    print(
        f"generate scale {scale:>4g}: {generated:7.2f} s  (+{materialised:.2f} s to materialise "
        f"{rows:,} rows in all frames; peak RSS {_rss_gib():.1f} GiB)"
    )
    del estate


def _timed(label: str, walk: Callable[[], int]) -> None:
    started = time.perf_counter()
    records = walk()
    seconds = time.perf_counter() - started
    print(
        f"  {label:<48} {records:>10,} records  {seconds:7.2f} s  {records / seconds:>10,.0f} records/s"
    )


def salesforce_walk(sb: Served, client: httpx.Client, sobject: str) -> Callable[[], int]:
    creds = sb.credentials["salesforce"]
    token = client.post(
        f"{sb.urls['salesforce']}/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(creds["client_id"], creds["client_secret"]),
    ).json()["access_token"]
    fields = {
        "Opportunity": "Id, Name, AccountId, StageName, IsWon, IsClosed, Amount, CurrencyIsoCode, CloseDate, SystemModstamp",
        "OpportunityHistory": "Id, OpportunityId, StageName, Amount, CloseDate, CreatedDate, SystemModstamp",
    }[sobject]
    soql = f"SELECT {fields} FROM {sobject} WHERE SystemModstamp > 2000-01-01T00:00:00Z ORDER BY SystemModstamp, Id"
    headers = {"Authorization": f"Bearer {token}", "Sforce-Query-Options": "batchSize=2000"}

    def walk() -> int:
        body = orjson.loads(
            client.get(
                f"{sb.urls['salesforce']}/services/data/v59.0/query/",
                params={"q": soql},
                headers=headers,
            ).content
        )
        count = len(body["records"])
        while not body["done"]:
            body = orjson.loads(
                client.get(
                    f"{sb.urls['salesforce']}{body['nextRecordsUrl']}", headers=headers
                ).content
            )
            count += len(body["records"])
        assert count == body["totalSize"]
        return count

    return walk


def stripe_walk(sb: Served, client: httpx.Client, obj: str) -> Callable[[], int]:
    headers = {"Authorization": f"Bearer {sb.credentials['stripe']['secret_key']}"}

    def walk() -> int:
        count, params = 0, {"limit": 100}
        while True:
            body = orjson.loads(
                client.get(f"{sb.urls['stripe']}/v1/{obj}", params=params, headers=headers).content
            )
            count += len(body["data"])
            if not body["has_more"]:
                return count
            params = {"limit": 100, "starting_after": body["data"][-1]["id"]}

    return walk


@dataclass(frozen=True)
class Served:
    urls: dict[str, str]
    credentials: dict[str, dict[str, str]]
    ca_file: str


def walk_all(sb: Served) -> None:
    with httpx.Client(verify=sb.ca_file, timeout=120) as client:
        for sobject in ("Opportunity", "OpportunityHistory"):
            walk = salesforce_walk(sb, client, sobject)
            walk()  # first walk builds the sort cache; the second is the steady state a poller sees
            _timed(f"salesforce query {sobject} (2,000/batch)", walk)
        for obj in ("invoices", "invoice_payments"):
            walk = stripe_walk(sb, client, obj)
            _timed(f"stripe list {obj} (100/page)", walk)


def bench_serving(scale: float, seed: int, estate: Estate | None) -> None:
    """Serve from a child process (the default: client and server do not share a GIL), or in
    this process when `estate` is given."""
    if estate is None:
        with spawn(scale=scale, seed=seed, timeout=600) as child:
            walk_all(Served(child.urls, child.info["credentials"], child.ca_file))
        return
    with serve(estate) as sb:
        walk_all(Served(sb.urls, sb.credentials, str(sb.ca_file)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 10, 40])
    parser.add_argument("--serve-scale", type=float, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--in-process", action="store_true", help="serve from this process (shares the GIL)"
    )
    args = parser.parse_args()
    for scale in args.scales:
        bench_generation(scale, args.seed)
        gc.collect()
    where = "this process" if args.in_process else "a child process"
    print(f"serving at scale {args.serve_scale:g} from {where} over loopback:")
    estate = Estate.generate(seed=args.seed, scale=args.serve_scale) if args.in_process else None
    bench_serving(args.serve_scale, args.seed, estate)


if __name__ == "__main__":
    main()
