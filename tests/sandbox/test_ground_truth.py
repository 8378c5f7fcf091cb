"""Every injected defect is in the ground truth, and every ground-truth record shows in the vendor data alone.

Two readings of the same firm are checked against the ground truth with the independent detectors
of `sandbox.estate.checks`: the estate's frames, and the data served over HTTP by the four running
simulators (read back with each vendor's own paging and value formats).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import polars as pl
import pytest

from sandbox.estate import BREAK_TYPES, ID_COLUMN, SCHEMAS, VENDORS, Estate
from sandbox.estate.checks import DETECTABLE, detect, truth_keys
from sandbox.server import Sandbox, serve

SEED = 11
SCALE = 0.05


@pytest.fixture(scope="module")
def estate() -> Estate:
    e = Estate.generate(SEED, SCALE)
    # off the generation instant, so nothing lines up with the base clock by construction
    e.advance(timedelta(days=3, hours=5, minutes=17))
    return _between_outages(e)


def _between_outages(e: Estate) -> Estate:
    """Move the clock past any outage in progress, so every API answers."""
    while True:
        active = e.outages.filter((pl.col("starts_at") <= e.now) & (pl.col("ends_at") > e.now))
        if active.height == 0:
            return e
        e.advance(active["ends_at"].max() - e.now + timedelta(minutes=1))


def _frames(e: Estate) -> dict[tuple[str, str], pl.DataFrame]:
    return {(v, o): e.frame(v, o) for v in VENDORS for o in e.objects(v)}


# --- the ground truth itself -------------------------------------------------------------------


def test_every_break_type_is_injected_at_the_default_rates(estate: Estate) -> None:
    assert set(estate.ground_truth["break_type"]) == set(BREAK_TYPES)


def test_ground_truth_rows_are_well_formed(estate: Estate) -> None:
    truth = estate.ground_truth
    assert truth["defect_id"].n_unique() == truth.height
    assert (truth["injected_at"] <= estate.now).all()
    for row in truth.iter_rows(named=True):
        assert Decimal(row["amount_at_risk"]) >= 0
        assert row["currency"] in {"USD", "GBP", "EUR"}
        records = json.loads(row["records"])
        assert records
        assert all(set(r) == {"vendor", "object", "id"} for r in records)


def test_every_record_named_by_the_ground_truth_exists_in_its_system(estate: Estate) -> None:
    frames = _frames(estate)
    for btype, records in estate.ground_truth.select("break_type", "records").iter_rows():
        if btype == "stale_source":
            continue
        for r in json.loads(records):
            ids = frames[r["vendor"], r["object"]][ID_COLUMN[r["vendor"]]]
            assert r["id"] in set(ids), (btype, r)


def test_defect_ids_are_stable_as_the_clock_moves() -> None:
    e = Estate.generate(SEED, SCALE)
    before = e.ground_truth.filter(pl.col("break_type") != "invoice_overdue")
    e.advance(timedelta(days=10))
    after = e.ground_truth.filter(pl.col("break_type") != "invoice_overdue")
    kept = before.join(after, on="defect_id", how="inner", suffix="_after")
    assert kept.height == before.height
    assert (kept["records"] == kept["records_after"]).all()


# --- visible in the vendor data: frames --------------------------------------------------------


@pytest.mark.parametrize("days", [0, 17, 61])
def test_the_frames_show_exactly_the_ground_truth(days: int) -> None:
    e = Estate.generate(SEED, SCALE)
    e.advance(timedelta(days=days))
    found = detect(_frames(e), e.now)
    expected = truth_keys(e.ground_truth)
    for btype in DETECTABLE:
        assert found[btype] == expected[btype], btype


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_any_seed_even_a_tiny_firm_shows_every_break_type_exactly(seed: int) -> None:
    e = Estate.generate(seed, 0.01)
    assert set(e.ground_truth["break_type"]) == set(BREAK_TYPES)
    found = detect(_frames(e), e.now)
    assert found == truth_keys(e.ground_truth)


def test_a_stale_source_is_an_outage_the_apis_must_serve() -> None:
    e = Estate.generate(SEED, SCALE)
    past = e.ground_truth.filter(pl.col("break_type") == "stale_source")
    assert past.height >= 1
    assert past["resolved_at"].null_count() == 0  # outages before the base clock are over
    future = e.outages.filter(pl.col("starts_at") > e.now).row(0, named=True)
    vendor = future["vendor"]
    assert e.source_available(vendor)
    e.advance(future["starts_at"] - e.now + timedelta(minutes=1))
    assert not e.source_available(vendor)
    open_stale = e.ground_truth.filter(
        (pl.col("break_type") == "stale_source") & pl.col("resolved_at").is_null()
    )
    assert open_stale["defect_id"].to_list() == [future["defect_id"]]
    assert json.loads(open_stale["records"][0]) == [{"vendor": vendor, "object": "*", "id": "*"}]
    e.advance(future["ends_at"] - e.now)
    assert e.source_available(vendor)


# --- visible in the vendor data: over HTTP -----------------------------------------------------


@pytest.fixture(scope="module")
def served(estate: Estate) -> Iterator[Sandbox]:
    with serve(estate) as running:
        yield running


def _parse(value: Any, dtype: Any) -> Any:
    """A served JSON value back to a typed value, whatever vendor spelling it came in."""
    if value is None:
        return None
    if isinstance(dtype, pl.Datetime):
        if isinstance(value, int):  # Stripe: unix seconds
            return datetime.fromtimestamp(value, UTC)
        text = str(value).replace("Z", "+00:00")
        if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():  # Salesforce +0000
            text = text[:-2] + ":" + text[-2:]
        parsed = datetime.fromisoformat(text)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if dtype == pl.Date:
        text = str(value)
        if "/" in text:  # NetSuite M/D/YYYY
            month, day, year = (int(p) for p in text.split("/"))
            return date(year, month, day)
        return date.fromisoformat(text[:10])
    if isinstance(dtype, pl.Decimal):
        return Decimal(str(value))
    if dtype == pl.Boolean:
        return value in (True, "T", "true")
    if dtype in (pl.Int64, pl.Int32):
        return int(value)
    if isinstance(dtype, pl.Struct):
        return {f.name: _parse(value.get(f.name), f.dtype) for f in dtype.fields}
    return value


def _typed(rows: list[dict[str, Any]], vendor: str, obj: str, columns: list[str]) -> pl.DataFrame:
    schema = {c: SCHEMAS[vendor][obj][c] for c in columns}
    data = [{c: _parse(r.get(c), t) for c, t in schema.items()} for r in rows]
    return pl.DataFrame(data, schema=schema, orient="row")


def _salesforce(sb: Sandbox, token: str, soql: str) -> list[dict[str, Any]]:
    base = sb.urls["salesforce"]
    headers = {"Authorization": f"Bearer {token}"}
    body = sb.http.get(
        f"{base}/services/data/v59.0/query/", params={"q": soql}, headers=headers
    ).json()
    rows = body["records"]
    while not body["done"]:
        body = sb.http.get(f"{base}{body['nextRecordsUrl']}", headers=headers).json()
        rows += body["records"]
    return rows


def _kantata(sb: Sandbox, obj: str) -> list[dict[str, Any]]:
    token = sb.credentials["kantata"]["access_token"]
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        body = sb.http.get(
            f"{sb.urls['kantata']}/api/v1/{obj}.json",
            params={"page": page, "per_page": 200, "order": "id:asc"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        rows += [body[obj][r["id"]] for r in body["results"]]
        if page >= body["meta"]["page_count"]:
            return rows
        page += 1


def _suiteql(sb: Sandbox, q: str) -> list[dict[str, Any]]:
    c = sb.credentials["netsuite"]
    auth = (
        f'OAuth realm="{c["account"]}", oauth_consumer_key="{c["consumer_key"]}", '
        f'oauth_token="{c["token_id"]}", oauth_signature="unchecked"'
    )
    rows: list[dict[str, Any]] = []
    offset = 0
    while True:
        body = sb.http.post(
            f"{sb.urls['netsuite']}/services/rest/query/v1/suiteql",
            params={"limit": 1000, "offset": offset},
            json={"q": q},
            headers={"Authorization": auth, "Prefer": "transient"},
        ).json()
        rows += body["items"]
        if not body["hasMore"]:
            return rows
        offset += body["count"]


def _stripe(sb: Sandbox, path: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {sb.credentials['stripe']['secret_key']}"}
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        body = sb.http.get(f"{sb.urls['stripe']}{path}", params=params, headers=headers).json()
        rows += body["data"]
        if not body["has_more"]:
            return rows
        params["starting_after"] = body["data"][-1]["id"]


def _stamp(col: str) -> str:
    return f"TO_CHAR({col}, 'YYYY-MM-DD HH24:MI:SS') AS {col}"


def _read_over_http(sb: Sandbox) -> dict[tuple[str, str], pl.DataFrame]:
    creds = sb.credentials["salesforce"]
    token = httpx.post(
        f"{sb.urls['salesforce']}/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(creds["client_id"], creds["client_secret"]),
        verify=str(sb.ca_file),
    ).json()["access_token"]
    f: dict[tuple[str, str], pl.DataFrame] = {}
    opp_cols = ["Id", "AccountId", "IsWon", "Amount", "CurrencyIsoCode"]
    f["salesforce", "Opportunity"] = _typed(
        _salesforce(sb, token, f"SELECT {', '.join(opp_cols)} FROM Opportunity"),
        "salesforce",
        "Opportunity",
        opp_cols,
    )
    hist_cols = ["OpportunityId", "StageName", "CreatedDate"]
    f["salesforce", "OpportunityHistory"] = _typed(
        _salesforce(sb, token, f"SELECT {', '.join(hist_cols)} FROM OpportunityHistory"),
        "salesforce",
        "OpportunityHistory",
        hist_cols,
    )
    for obj in ("workspaces", "external_references", "time_entries", "stories", "invoices"):
        f["kantata", obj] = _typed(_kantata(sb, obj), "kantata", obj, list(SCHEMAS["kantata"][obj]))
    txn_cols = [
        "id", "type", "externalid", "foreigntotal", "status", "duedate", "foreignamountunpaid",
        "entity", "memo", "foreignpaymentamountunused", "currency", "createddate",
    ]  # fmt: skip
    select = ", ".join(_stamp(c) if c == "createddate" else c for c in txn_cols)
    f["netsuite", "transaction"] = _typed(
        _suiteql(sb, f"SELECT {select} FROM transaction ORDER BY id"),
        "netsuite",
        "transaction",
        txn_cols,
    )
    cust_cols = ["id", "externalid", "companyname", "datecreated"]
    f["netsuite", "customer"] = _typed(
        _suiteql(sb, f"SELECT id, externalid, companyname, {_stamp('datecreated')} FROM customer"),
        "netsuite",
        "customer",
        cust_cols,
    )
    f["netsuite", "currency"] = _typed(
        _suiteql(sb, "SELECT id, symbol FROM currency"), "netsuite", "currency", ["id", "symbol"]
    )
    inv_cols = ["id", "status", "currency", "metadata"]
    f["stripe", "invoices"] = _typed(_stripe(sb, "/v1/invoices"), "stripe", "invoices", inv_cols)
    return f


def test_the_served_data_shows_exactly_the_ground_truth(estate: Estate, served: Sandbox) -> None:
    with estate.lock:
        expected = truth_keys(estate.ground_truth)
        now = estate.now
    frames = _read_over_http(served)
    # the simulators served every row the estate holds
    for key, frame in frames.items():
        assert frame.height == estate.frame(*key).height, key
    found = detect(frames, now)
    for btype in DETECTABLE:
        assert found[btype] == expected[btype], btype
        assert expected[btype], f"no {btype} to find"


def test_a_stale_source_answers_503_over_http_while_its_outage_lasts() -> None:
    e = _between_outages(Estate.generate(SEED, 0.01))
    outage = e.outages.filter(pl.col("starts_at") > e.now).row(0, named=True)
    probes = {
        "salesforce": ("GET", "/services/data/v59.0/query/?q=SELECT+Id+FROM+Account"),
        "kantata": ("GET", "/api/v1/workspaces.json"),
        "netsuite": ("POST", "/services/rest/query/v1/suiteql"),
        "stripe": ("GET", "/v1/customers"),
    }
    with serve(e) as sb:
        method, path = probes[outage["vendor"]]

        def probe() -> int:
            body = {"q": "SELECT id FROM customer"} if method == "POST" else None
            return sb.http.request(method, sb.urls[outage["vendor"]] + path, json=body).status_code

        before = probe()
        assert before != 503
        e.advance(outage["starts_at"] - e.now + timedelta(seconds=30))
        assert probe() == 503
        e.advance(outage["ends_at"] - e.now)
        assert probe() == before


def test_a_resync_through_the_apis_resolves_the_defect_it_repairs() -> None:
    e = Estate.generate(SEED, SCALE)
    e.advance(timedelta(hours=2))
    truth = e.ground_truth

    def first(btype: str) -> dict[str, Any]:
        row = truth.filter(pl.col("break_type") == btype).row(0, named=True)
        return {**row, "ids": [r["id"] for r in json.loads(row["records"])]}

    no_project = first("won_deal_without_project")
    (opp_id,) = no_project["ids"]
    opp = e.get("salesforce", "Opportunity", opp_id)
    assert opp is not None
    (ws,) = e.insert(
        "kantata",
        "workspaces",
        [{"title": opp["Name"], "currency": opp["CurrencyIsoCode"],
          "price_in_cents": int(opp["Amount"] * 100)}],
    )  # fmt: skip
    e.insert(
        "kantata",
        "external_references",
        [{"subject_type": "Workspace", "subject_id": ws, "service_name": "Salesforce",
          "service_model": "Opportunity", "service_model_ref": opp_id, "status": "synced"}],
    )  # fmt: skip
    unbilled = first("invoice_missing_in_billing")
    (ns_id,) = unbilled["ids"]
    e.insert("stripe", "invoices", [{"status": "open", "metadata": {"netsuite_id": ns_id}}])
    fixed_at = e.now

    was_open = truth.filter(pl.col("resolved_at").is_null()).select("defect_id")
    after = e.ground_truth.join(was_open, on="defect_id", how="semi")
    resolved = after.filter(pl.col("resolved_at").is_not_null())
    assert set(resolved["defect_id"]) == {no_project["defect_id"], unbilled["defect_id"]}
    assert (resolved["resolved_at"] == fixed_at).all()
    assert detect(_frames(e), e.now) == truth_keys(e.ground_truth)
    e.advance(timedelta(days=2))  # repaired stays repaired
    again = e.ground_truth.filter(pl.col("defect_id") == no_project["defect_id"])
    assert again["resolved_at"].to_list() == [fixed_at]
