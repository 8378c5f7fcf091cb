"""Every fault kind is observable by a plain HTTP client, set at runtime through the admin endpoint."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.apis import FaultConfigError, FaultInjector, FaultPlan
from sandbox.server import Sandbox

KANTATA_AUTH = {"Authorization": "Bearer sandbox-kantata-token"}


def set_faults(sandbox: Sandbox, vendor: str, *rules: dict[str, Any], seed: int = 0) -> dict:
    response = sandbox.http.post(
        f"{sandbox.urls[vendor]}/__admin/faults",
        json={"seed": seed, "faults": list(rules), "replace": True},
    )
    response.raise_for_status()
    return response.json()


def stripe_headers(sandbox: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sandbox.credentials['stripe']['secret_key']}"}


def ns_headers(sandbox: Sandbox) -> dict[str, str]:
    c = sandbox.credentials["netsuite"]
    return {
        "Authorization": f'OAuth realm="{c["account"]}", oauth_consumer_key="{c["consumer_key"]}", '
        f'oauth_token="{c["token_id"]}", oauth_signature="unchecked"'
    }


def sf_get(sandbox: Sandbox, token: str, path: str, **params: Any) -> httpx.Response:
    return sandbox.http.get(
        f"{sandbox.urls['salesforce']}/services/data/v59.0/{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
    )


SOQL = "SELECT Id, SystemModstamp FROM Opportunity ORDER BY SystemModstamp, Id"
SUITEQL = {"q": "SELECT id, lastmodifieddate FROM transaction ORDER BY lastmodifieddate, id"}


def test_admin_endpoint_lists_endpoints_and_rejects_unknown_kinds(faults: Sandbox) -> None:
    url = f"{faults.urls['stripe']}/__admin/faults"
    state = faults.http.get(url).json()
    assert "invoices.list" in state["endpoints"]
    assert state["faults"] == []
    bad = faults.http.post(url, json={"faults": [{"kind": "gremlins"}]})
    assert bad.status_code == 400
    set_faults(faults, "stripe", {"kind": "latency", "seconds": 0.01})
    assert len(faults.http.get(url).json()["faults"]) == 1
    assert faults.http.delete(url).json()["faults"] == []


def test_latency_delays_the_answer(faults: Sandbox) -> None:
    set_faults(faults, "stripe", {"kind": "latency", "endpoint": "customers.list", "seconds": 0.4})
    started = time.monotonic()
    response = faults.http.get(
        f"{faults.urls['stripe']}/v1/customers", headers=stripe_headers(faults)
    )
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


def test_error_rate_answers_5xx_in_the_vendor_envelope(faults: Sandbox) -> None:
    set_faults(faults, "kantata", {"kind": "error", "status": 503})
    response = faults.http.get(
        f"{faults.urls['kantata']}/api/v1/workspaces.json", headers=KANTATA_AUTH
    )
    assert response.status_code == 503
    assert response.json()["errors"][0]["type"] == "system"


def test_error_rate_is_deterministic_for_a_seed(faults: Sandbox) -> None:
    def outcomes() -> list[int]:
        set_faults(faults, "kantata", {"kind": "error", "rate": 0.5}, seed=42)
        return [
            faults.http.get(
                f"{faults.urls['kantata']}/api/v1/stories", headers=KANTATA_AUTH
            ).status_code
            for _ in range(12)
        ]

    first = outcomes()
    assert set(first) == {200, 500}
    assert outcomes() == first


def test_rate_limit_burst_uses_each_vendors_own_signal(faults: Sandbox, sf_token: str) -> None:
    burst = {"kind": "rate_limit", "after": 1, "count": 2}
    set_faults(faults, "salesforce", burst)
    statuses = [sf_get(faults, sf_token, "query/", q=SOQL) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 403, 403, 200]
    assert statuses[1].json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert statuses[1].headers["Sforce-Limit-Info"].startswith("api-usage=")

    set_faults(faults, "stripe", {"kind": "rate_limit", "count": 1})
    limited = faults.http.get(
        f"{faults.urls['stripe']}/v1/invoices", headers=stripe_headers(faults)
    )
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit"

    set_faults(faults, "netsuite", {"kind": "rate_limit", "count": 1})
    limited = faults.http.post(
        f"{faults.urls['netsuite']}/services/rest/query/v1/suiteql",
        json=SUITEQL,
        headers=ns_headers(faults),
    )
    assert limited.status_code == 429
    assert limited.json()["o:errorDetails"][0]["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"

    set_faults(faults, "kantata", {"kind": "rate_limit", "count": 1})
    limited = faults.http.get(f"{faults.urls['kantata']}/api/v1/invoices", headers=KANTATA_AUTH)
    assert limited.status_code == 429
    assert "errors" in limited.json()


def test_hang_outlasts_the_client_timeout(faults: Sandbox) -> None:
    set_faults(faults, "stripe", {"kind": "hang", "seconds": 3, "count": 1})
    with pytest.raises(httpx.ReadTimeout):
        faults.http.get(
            f"{faults.urls['stripe']}/v1/invoices", headers=stripe_headers(faults), timeout=0.3
        )


@pytest.mark.parametrize("kind", ["malformed_json", "truncated_json"])
def test_broken_json_bodies_fail_to_parse(faults: Sandbox, kind: str) -> None:
    set_faults(faults, "netsuite", {"kind": kind, "endpoint": "suiteql"})
    response = faults.http.post(
        f"{faults.urls['netsuite']}/services/rest/query/v1/suiteql",
        params={"limit": 5},
        json=SUITEQL,
        headers=ns_headers(faults),
    )
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        response.json()


def kantata_pages(sandbox: Sandbox, obj: str, per_page: int) -> list[list[str]]:
    pages, page = [], 1
    while True:
        body = sandbox.http.get(
            f"{sandbox.urls['kantata']}/api/v1/{obj}.json",
            params={"order": "updated_at:asc", "per_page": per_page, "page": page},
            headers=KANTATA_AUTH,
        ).json()
        pages.append([r["id"] for r in body["results"]])
        if page >= body["meta"]["page_count"]:
            return pages
        page += 1


def test_duplicate_page_repeats_the_previous_pages_last_record(faults: Sandbox) -> None:
    set_faults(
        faults, "kantata", {"kind": "duplicate_page", "endpoint": "stories.list", "count": 1}
    )
    pages = kantata_pages(faults, "stories", per_page=10)
    assert pages[1][0] == pages[0][-1]
    flat = [i for p in pages for i in p]
    assert len(flat) == len(set(flat)) + 1


def test_change_between_pages_makes_offset_paging_skip_a_record(faults: Sandbox) -> None:
    expected = set(faults.estate.frame("kantata", "time_entries")["id"].to_list())
    set_faults(
        faults,
        "kantata",
        {"kind": "change_between_pages", "endpoint": "time_entries.list", "count": 1},
    )
    seen = [i for p in kantata_pages(faults, "time_entries", per_page=50) for i in p]
    assert set(seen) != expected or len(seen) != len(set(seen))
    assert len(expected - set(seen)) == 1  # the record after the moved one was never served
    assert len(seen) - len(set(seen)) == 1  # and the moved record was served twice


def test_change_between_pages_shows_new_values_through_a_salesforce_locator(
    faults: Sandbox, sf_token: str
) -> None:
    set_faults(faults, "salesforce", {"kind": "change_between_pages", "count": 1})
    first = faults.http.get(
        f"{faults.urls['salesforce']}/services/data/v59.0/query/",
        params={"q": SOQL},
        headers={"Authorization": f"Bearer {sf_token}", "Sforce-Query-Options": "batchSize=200"},
    ).json()
    assert first["done"] is False
    second = faults.http.get(
        f"{faults.urls['salesforce']}{first['nextRecordsUrl']}",
        headers={"Authorization": f"Bearer {sf_token}"},
    ).json()
    stamps = [r["SystemModstamp"] for r in second["records"]]
    assert stamps[0] > stamps[1]  # the touched record now sorts after the query's order


def test_lost_response_drops_the_connection_after_the_write_commits(faults: Sandbox) -> None:
    set_faults(
        faults, "stripe", {"kind": "lost_response", "endpoint": "customers.create", "count": 1}
    )
    key = f"lost-{uuid.uuid4()}"
    url = f"{faults.urls['stripe']}/v1/customers"
    headers = {**stripe_headers(faults), "Idempotency-Key": key}
    marker = uuid.uuid4().hex[:10]
    form = {"name": "Lost Response GmbH", "metadata[netsuite_id]": marker}
    with pytest.raises(httpx.RemoteProtocolError):
        faults.http.post(url, data=form, headers=headers)
    # The write happened: retrying with the same key replays it instead of creating a twin.
    retry = faults.http.post(url, data=form, headers=headers)
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    search = faults.http.get(
        f"{url}/search",
        params={"query": f"metadata['netsuite_id']:'{marker}'"},
        headers=stripe_headers(faults),
    ).json()
    assert [c["id"] for c in search["data"]] == [retry.json()["id"]]


def test_lost_response_as_a_5xx_after_the_write_commits(faults: Sandbox) -> None:
    set_faults(
        faults, "netsuite", {"kind": "lost_response", "endpoint": "record.put", "mode": "error"}
    )
    eid = f"LOST-{uuid.uuid4().hex[:8]}"
    url = f"{faults.urls['netsuite']}/services/rest/record/v1/customer/eid:{eid}"
    response = faults.http.put(
        url, json={"companyName": "Half Written"}, headers=ns_headers(faults)
    )
    assert response.status_code == 500
    assert faults.http.get(url, headers=ns_headers(faults)).json()["companyName"] == "Half Written"


def test_token_expiry_mid_run_forces_a_new_token(faults: Sandbox, sf_token: str) -> None:
    assert sf_get(faults, sf_token, "query/", q=SOQL).status_code == 200
    set_faults(faults, "salesforce", {"kind": "token_expiry", "endpoint": "query", "count": 1})
    expired = sf_get(faults, sf_token, "query/", q=SOQL)
    assert expired.status_code == 401
    assert expired.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID", "fields": []}
    ]
    creds = faults.credentials["salesforce"]
    fresh = faults.http.post(
        f"{faults.urls['salesforce']}/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(creds["client_id"], creds["client_secret"]),
    ).json()["access_token"]
    assert sf_get(faults, fresh, "query/", q=SOQL).status_code == 200


def test_down_is_a_stale_source_until_reset(faults: Sandbox) -> None:
    set_faults(faults, "stripe", {"kind": "down"})
    for path in ("/v1/invoices", "/v1/customers", "/v1/events"):
        response = faults.http.get(f"{faults.urls['stripe']}{path}", headers=stripe_headers(faults))
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "api_error"
    faults.http.post(f"{faults.urls['stripe']}/__admin/faults/reset")
    assert (
        faults.http.get(
            f"{faults.urls['stripe']}/v1/invoices", headers=stripe_headers(faults)
        ).status_code
        == 200
    )


def test_fault_file_in_yaml_is_read_and_split_by_vendor(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(
        "seed: 3\n"
        "faults:\n"
        "  - {vendor: '*', kind: latency, seconds: 0.1}\n"
        "  - {vendor: stripe, endpoint: 'invoices.*', kind: error, status: 502, rate: 0.5}\n"
    )
    plan = FaultPlan.load(path)
    stripe = FaultInjector("stripe", ("invoices.list",), plan)
    kantata = FaultInjector("kantata", ("workspaces.list",), plan)
    assert [r["kind"] for r in stripe.snapshot()["faults"]] == ["latency", "error"]
    assert [r["kind"] for r in kantata.snapshot()["faults"]] == ["latency"]
    with pytest.raises(FaultConfigError):
        FaultPlan.from_obj({"faults": [{"kind": "latency", "status": 500}]})


def test_an_injected_401_is_the_vendors_own_auth_error(faults: Sandbox) -> None:
    set_faults(faults, "netsuite", {"kind": "error", "status": 401, "count": 1})
    response = faults.http.post(
        f"{faults.urls['netsuite']}/services/rest/query/v1/suiteql",
        json=SUITEQL,
        headers=ns_headers(faults),
    )
    assert response.status_code == 401
    assert response.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"


def suiteql_ids(sandbox: Sandbox, limit: int) -> list[str]:
    ids, offset = [], 0
    while True:
        body = sandbox.http.post(
            f"{sandbox.urls['netsuite']}/services/rest/query/v1/suiteql",
            params={"limit": limit, "offset": offset},
            json={"q": "SELECT id FROM customer ORDER BY lastmodifieddate, id"},
            headers=ns_headers(sandbox),
        ).json()
        ids += [item["id"] for item in body["items"]]
        if not body["hasMore"]:
            return ids
        offset += limit


def test_suiteql_offset_paging_duplicates_and_skips_under_faults(faults: Sandbox) -> None:
    clean = suiteql_ids(faults, 10)
    set_faults(faults, "netsuite", {"kind": "duplicate_page", "endpoint": "suiteql", "count": 1})
    doubled = suiteql_ids(faults, 10)
    assert doubled[10] == doubled[9]
    assert sorted(set(doubled)) == sorted(clean)
    set_faults(
        faults, "netsuite", {"kind": "change_between_pages", "endpoint": "suiteql", "count": 1}
    )
    shifted = suiteql_ids(faults, 10)
    assert len(set(clean) - set(shifted)) == 1


def test_stripe_cursor_page_can_repeat_the_cursor_record(faults: Sandbox) -> None:
    url = f"{faults.urls['stripe']}/v1/invoices"
    first = faults.http.get(url, params={"limit": 5}, headers=stripe_headers(faults)).json()
    set_faults(
        faults, "stripe", {"kind": "duplicate_page", "endpoint": "invoices.list", "count": 1}
    )
    cursor = first["data"][-1]["id"]
    second = faults.http.get(
        url, params={"limit": 5, "starting_after": cursor}, headers=stripe_headers(faults)
    ).json()
    assert second["data"][0]["id"] == cursor


def test_a_hung_request_that_outlives_its_client_does_no_work(faults: Sandbox) -> None:
    set_faults(faults, "stripe", {"kind": "hang", "seconds": 0.3, "count": 1})
    before = faults.estate.frame("stripe", "customers").height
    late = faults.http.post(
        f"{faults.urls['stripe']}/v1/customers",
        data={"name": "Too Late"},
        headers=stripe_headers(faults),
    )
    assert late.status_code == 504
    assert faults.estate.frame("stripe", "customers").height == before
