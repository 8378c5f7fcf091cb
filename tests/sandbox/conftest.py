"""Fixtures for the sandbox tests: a small estate served once per session on loopback."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import polars as pl
import pytest

from sandbox.estate.schema import ID_COLUMN, MODIFIED_COLUMN, SCHEMAS
from sandbox.server import Sandbox, serve

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class TinyEstate:
    """A hand-built estate that follows the schema contract: `rows` records per object.

    Values are synthetic but typed exactly as the contract says, so the APIs can be tested
    without the generator (and with exact, small counts for paging arithmetic).
    """

    def __init__(self, rows: int = 25):
        self.lock = threading.RLock()
        self._now = NOW
        self._frames: dict[tuple[str, str], pl.DataFrame] = {}
        self._seq = 10_000
        for vendor, objects in SCHEMAS.items():
            for obj, schema in objects.items():
                self._frames[(vendor, obj)] = pl.DataFrame(
                    [_row(vendor, obj, schema, i) for i in range(rows)], schema=schema, orient="row"
                )

    @property
    def now(self) -> dt.datetime:
        return self._now

    def objects(self, vendor: str) -> list[str]:
        return list(SCHEMAS[vendor])

    def frame(self, vendor: str, obj: str) -> pl.DataFrame:
        return self._frames[(vendor, obj)]

    def get(self, vendor: str, obj: str, id: str) -> dict[str, Any] | None:
        found = self._frames[(vendor, obj)].filter(pl.col(ID_COLUMN[vendor]) == id)
        return found.row(0, named=True) if found.height else None

    def source_available(self, vendor: str, at: dt.datetime | None = None) -> bool:
        return True

    def insert(self, vendor: str, obj: str, rows: list[dict[str, Any]]) -> list[str]:
        frame = self._frames[(vendor, obj)]
        schema = frame.schema
        ids = []
        new = []
        for row in rows:
            self._seq += 1
            full = {c: None for c in schema}
            full.update(row)
            idc = ID_COLUMN[vendor]
            full[idc] = full[idc] or _new_id(vendor, obj, self._seq)
            for c, d in schema.items():
                if isinstance(d, pl.Datetime) and c in (
                    MODIFIED_COLUMN[(vendor, obj)],
                    "created_at",
                    "CreatedDate",
                    "LastModifiedDate",
                    "created",
                    "datecreated",
                    "createddate",
                ):
                    full[c] = self._now
                if isinstance(d, pl.Boolean) and full[c] is None:
                    full[c] = False
            if vendor == "stripe":
                full["object"] = _STRIPE_OBJECT[obj]
            ids.append(full[idc])
            new.append(full)
        self._frames[(vendor, obj)] = pl.concat(
            [frame, pl.DataFrame(new, schema=schema, orient="row")]
        )
        return ids

    def update(self, vendor: str, obj: str, id: str, changes: dict[str, Any]) -> None:
        frame = self._frames[(vendor, obj)]
        idc = ID_COLUMN[vendor]
        mask = pl.col(idc) == id
        if frame.filter(mask).height == 0:
            raise KeyError(id)
        changes = dict(changes)
        if vendor != "stripe":
            changes[MODIFIED_COLUMN[(vendor, obj)]] = self._now
        exprs = [
            pl.when(mask).then(pl.lit(v, dtype=frame.schema[c])).otherwise(pl.col(c)).alias(c)
            for c, v in changes.items()
        ]
        self._frames[(vendor, obj)] = frame.with_columns(exprs)

    def advance(self, duration: dt.timedelta) -> None:
        self._now += duration

    def tick(self, real_elapsed: Any, speedup: float) -> dt.timedelta:
        seconds = (
            real_elapsed.total_seconds() if isinstance(real_elapsed, dt.timedelta) else real_elapsed
        )
        step = dt.timedelta(seconds=seconds * speedup)
        self.advance(step)
        return step


_STRIPE_OBJECT = {
    "customers": "customer",
    "invoices": "invoice",
    "payment_intents": "payment_intent",
    "invoice_payments": "invoice_payment",
    "events": "event",
}
_SF_PREFIX = {"Account": "001", "Opportunity": "006", "OpportunityHistory": "008"}
_STRIPE_PREFIX = {
    "customers": "cus",
    "invoices": "in",
    "payment_intents": "pi",
    "invoice_payments": "inpay",
    "events": "evt",
}


def _new_id(vendor: str, obj: str, n: int) -> str:
    if vendor == "salesforce":
        return f"{_SF_PREFIX[obj]}SB{n:013d}"
    if vendor == "stripe":
        return f"{_STRIPE_PREFIX[obj]}_{n:014d}"
    return str(n)


def _row(vendor: str, obj: str, schema: dict[str, Any], i: int) -> list[Any]:
    base = NOW - dt.timedelta(days=35)
    out: list[Any] = []
    for column, dtype in schema.items():
        value: Any
        if column == ID_COLUMN[vendor]:
            value = _new_id(vendor, obj, i + 1)
        elif column == "object":
            value = _STRIPE_OBJECT[obj]
        elif column == "type" and obj == "transaction":
            value = "CustInvc" if i % 2 == 0 else "CustPymt"
        elif column == "data_object_type":
            value = "invoice"
        elif column == "data_object_id":
            value = _new_id("stripe", "invoices", i + 1)
        elif column == "metadata":
            value = {"netsuite_id": str(i + 1)}
        elif column == "externalid":
            value = f"EXT-{i + 1}"
        elif column in ("currency",) and vendor == "stripe":
            value = "usd"
        elif column == "subject_type":
            value = "Workspace"
        elif column in ("subject_id", "workspace_id"):
            value = str(i % 5 + 1)
        elif column == "service_model_ref":
            value = _new_id("salesforce", "Opportunity", i + 1)
        elif isinstance(dtype, pl.Datetime):
            # Stamps tie in pairs so ordering must break ties by id.
            value = base + dt.timedelta(hours=(i // 2) * 3)
        elif dtype == pl.Date:
            value = (base + dt.timedelta(days=i)).date()
        elif isinstance(dtype, pl.Decimal):
            value = Decimal(f"{i * 100 + 12}.50")
        elif dtype in (pl.Int64, pl.Int32):
            value = i * 1000
        elif dtype == pl.Float64:
            value = float(i)
        elif dtype == pl.Boolean:
            value = i % 2 == 0
        elif isinstance(dtype, pl.List):
            value = []
        elif isinstance(dtype, pl.Struct):
            value = {f.name: None for f in dtype.fields}
        else:
            value = f"{column}-{i % 7}"
        out.append(value)
    return out


@pytest.fixture(scope="session")
def tiny_estate() -> TinyEstate:
    return TinyEstate(rows=450)


@pytest.fixture(scope="session")
def sandbox(tiny_estate: TinyEstate) -> Iterator[Sandbox]:
    with serve(tiny_estate) as running:
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
