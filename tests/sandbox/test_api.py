"""Wire envelopes, pagination, auth, errors and write semantics of the four simulators."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import httpx
import orjson
import polars as pl
import pytest

from sandbox.apis import _netsuite
from sandbox.server import Sandbox


def sf(sandbox: Sandbox, token: str, path: str, method: str = "GET", **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    return sandbox.http.request(
        method,
        f"{sandbox.urls['salesforce']}/services/data/v59.0/{path}",
        headers=headers,
        **kw,
    )


def kantata(sandbox: Sandbox, path: str, method: str = "GET", **kw: Any) -> httpx.Response:
    return sandbox.http.request(
        method,
        f"{sandbox.urls['kantata']}/api/v1/{path}",
        headers={"Authorization": f"Bearer {sandbox.credentials['kantata']['access_token']}"},
        **kw,
    )


def ns(sandbox: Sandbox, path: str, method: str = "GET", **kw: Any) -> httpx.Response:
    c = sandbox.credentials["netsuite"]
    auth = (
        f'OAuth realm="{c["account"]}", oauth_consumer_key="{c["consumer_key"]}", '
        f'oauth_token="{c["token_id"]}", oauth_signature="unchecked"'
    )
    headers = {"Authorization": auth, **kw.pop("headers", {})}
    return sandbox.http.request(
        method, f"{sandbox.urls['netsuite']}/services/rest{path}", headers=headers, **kw
    )


def stripe(sandbox: Sandbox, path: str, method: str = "GET", **kw: Any) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {sandbox.credentials['stripe']['secret_key']}",
        **kw.pop("headers", {}),
    }
    return sandbox.http.request(method, f"{sandbox.urls['stripe']}{path}", headers=headers, **kw)


# --- Salesforce ------------------------------------------------------------------------------------


def test_salesforce_token_endpoint_refuses_wrong_client_in_oauth_format(sandbox: Sandbox) -> None:
    response = sandbox.http.post(
        f"{sandbox.urls['salesforce']}/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("nobody", "nothing"),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"


def test_salesforce_errors_are_json_arrays(sandbox: Sandbox, sf_token: str) -> None:
    unauthorized = sf(sandbox, "not-a-token", "query/", params={"q": "SELECT Id FROM Account"})
    assert unauthorized.status_code == 401
    assert unauthorized.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    malformed = sf(sandbox, sf_token, "query/", params={"q": "SELEKT Id FROM Account"})
    assert malformed.status_code == 400
    assert malformed.json()[0]["errorCode"] == "MALFORMED_QUERY"
    bad_field = sf(sandbox, sf_token, "query/", params={"q": "SELECT Nope__c FROM Account"})
    assert bad_field.json()[0]["errorCode"] == "INVALID_FIELD"
    bad_object = sf(sandbox, sf_token, "query/", params={"q": "SELECT Id FROM Widget"})
    assert bad_object.json()[0]["errorCode"] == "INVALID_TYPE"
    missing = sf(sandbox, sf_token, "sobjects/Account/001000000000000AAA")
    assert missing.status_code == 404
    assert missing.json()[0]["errorCode"] == "NOT_FOUND"


def test_salesforce_query_pages_by_locator_in_batches(sandbox: Sandbox, sf_token: str) -> None:
    q = "SELECT Id, SystemModstamp FROM OpportunityHistory ORDER BY SystemModstamp, Id"
    frame = sandbox.estate.frame("salesforce", "OpportunityHistory").filter(~pl.col("IsDeleted"))
    first = sf(
        sandbox,
        sf_token,
        "query/",
        params={"q": q},
        headers={"Sforce-Query-Options": "batchSize=50"},
    ).json()
    # batchSize below 200 is raised to Salesforce's minimum of 200.
    assert len(first["records"]) == min(200, frame.height)
    assert first["totalSize"] == frame.height
    ids = [r["Id"] for r in first["records"]]
    body = first
    while not body["done"]:
        assert body["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
        body = sandbox.http.get(
            f"{sandbox.urls['salesforce']}{body['nextRecordsUrl']}",
            headers={"Authorization": f"Bearer {sf_token}"},
        ).json()
        ids += [r["Id"] for r in body["records"]]
    assert sorted(ids) == sorted(frame["Id"].to_list())
    assert "nextRecordsUrl" not in body


def test_salesforce_where_literal_and_datetime_format(sandbox: Sandbox, sf_token: str) -> None:
    frame = sandbox.estate.frame("salesforce", "Opportunity").filter(~pl.col("IsDeleted"))
    cut = frame["SystemModstamp"].sort()[frame.height // 2]
    literal = cut.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = sf(
        sandbox,
        sf_token,
        "query/",
        params={
            "q": f"SELECT Id, SystemModstamp, CloseDate, Amount FROM Opportunity "
            f"WHERE SystemModstamp > {literal} ORDER BY SystemModstamp, Id"
        },
    ).json()
    assert (
        body["totalSize"]
        == frame.filter(pl.col("SystemModstamp") > cut.replace(microsecond=0)).height
    )
    record = body["records"][0]
    assert record["SystemModstamp"].endswith("+0000")
    dt.datetime.strptime(record["SystemModstamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
    dt.date.fromisoformat(record["CloseDate"])


def test_salesforce_query_all_includes_deleted_rows(sandbox: Sandbox, sf_token: str) -> None:
    frame = sandbox.estate.frame("salesforce", "Account")
    q = {"q": "SELECT Id FROM Account LIMIT 100000"}
    live = sf(sandbox, sf_token, "query/", params=q).json()["totalSize"]
    everything = sf(sandbox, sf_token, "queryAll/", params=q).json()["totalSize"]
    assert everything == frame.height
    assert live == frame.filter(~pl.col("IsDeleted")).height


def test_salesforce_daily_budget_is_reported_and_enforced(sandbox: Sandbox, sf_token: str) -> None:
    sim = sandbox.simulators["salesforce"]
    sim.set_api_usage(sim.daily_api_limit - 1)
    try:
        last = sf(sandbox, sf_token, "limits/")
        assert (
            last.headers["Sforce-Limit-Info"]
            == f"api-usage={sim.daily_api_limit}/{sim.daily_api_limit}"
        )
        refused = sf(sandbox, sf_token, "limits/")
        assert refused.status_code == 403
        assert refused.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    finally:
        sim.set_api_usage(0)


def test_salesforce_upsert_by_external_id(sandbox: Sandbox, sf_token: str) -> None:
    name = f"Ext {uuid.uuid4().hex[:8]}"
    created = sf(
        sandbox, sf_token, f"sobjects/Account/Name/{name}", "PATCH", json={"Industry": "Retail"}
    )
    assert created.status_code == 201
    assert created.json()["created"] is True
    updated = sf(
        sandbox, sf_token, f"sobjects/Account/Name/{name}", "PATCH", json={"Industry": "Media"}
    )
    assert updated.status_code == 200
    assert updated.json() == {
        "id": created.json()["id"],
        "success": True,
        "errors": [],
        "created": False,
    }
    fetched = sf(sandbox, sf_token, f"sobjects/Account/{created.json()['id']}").json()
    assert fetched["Industry"] == "Media"
    assert fetched["attributes"]["type"] == "Account"
    with_id = sf(sandbox, sf_token, f"sobjects/Account/Name/{name}", "PATCH", json={"Id": "x"})
    assert with_id.status_code == 400


# --- Kantata ---------------------------------------------------------------------------------------


def test_kantata_envelope_is_keyed_by_string_id_with_page_count(sandbox: Sandbox) -> None:
    total = sandbox.estate.frame("kantata", "time_entries").height
    body = kantata(
        sandbox, "time_entries.json", params={"per_page": 500, "order": "updated_at:asc"}
    ).json()
    assert body["meta"]["page_size"] == 200  # per_page is capped at 200
    assert body["count"] == body["meta"]["count"] == total
    assert body["meta"]["page_count"] == -(-total // 200)
    assert [r["key"] for r in body["results"]] == ["time_entries"] * len(body["results"])
    ids = [r["id"] for r in body["results"]]
    assert all(isinstance(i, str) for i in ids)
    assert set(body["time_entries"]) == set(ids)
    stamps = [body["time_entries"][i]["updated_at"] for i in ids]
    assert stamps == sorted(stamps)


def test_kantata_updated_after_filter_and_include(sandbox: Sandbox) -> None:
    frame = sandbox.estate.frame("kantata", "time_entries")
    cut = frame["updated_at"].sort()[frame.height // 2]
    body = kantata(
        sandbox,
        "time_entries",
        params={
            "updated_after": cut.isoformat(),
            "order": "updated_at:asc",
            "per_page": 200,
            "include": "workspace",
        },
    ).json()
    assert body["count"] == frame.filter(pl.col("updated_at") > cut).height
    referenced = {e["workspace_id"] for e in body["time_entries"].values() if e["workspace_id"]}
    assert referenced <= set(body["workspaces"])


def test_kantata_unauthorized_is_an_oauth_error(sandbox: Sandbox) -> None:
    response = sandbox.http.get(
        f"{sandbox.urls['kantata']}/api/v1/workspaces", headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["type"] == "oauth"


def test_kantata_workspace_and_external_reference_create_or_update(sandbox: Sandbox) -> None:
    missing = kantata(sandbox, "workspaces.json", "POST", json={"workspace": {"currency": "USD"}})
    assert missing.status_code == 422
    assert missing.json()["errors"][0] == {
        "type": "validation",
        "message": "Please give your project a title",
        "field": "title",
    }
    created = kantata(
        sandbox,
        "workspaces.json",
        "POST",
        json={"workspace": {"title": "Resync", "price_in_cents": 500000}},
    ).json()
    (workspace_id,) = created["workspaces"]
    opportunity = f"006SB{uuid.uuid4().hex[:13]}"
    ref = {
        "service_name": "Salesforce",
        "service_model": "Opportunity",
        "service_model_ref": opportunity,
        "subject_type": "Workspace",
        "subject_id": workspace_id,
    }
    first = kantata(
        sandbox, "external_references/create_or_update", "POST", json={"external_reference": ref}
    )
    again = kantata(
        sandbox,
        "external_references/create_or_update",
        "POST",
        json={"external_reference": {**ref, "status": "resynced"}},
    )
    assert list(first.json()["external_references"]) == list(again.json()["external_references"])
    (ref_id,) = again.json()["external_references"]
    assert again.json()["external_references"][ref_id]["status"] == "resynced"
    found = kantata(
        sandbox, "workspaces", params={"external_reference_service_model_ref": opportunity}
    ).json()
    assert list(found["workspaces"]) == [workspace_id]
    assert found["workspaces"][workspace_id]["external_reference_ids"] == [ref_id]


# --- NetSuite ------------------------------------------------------------------------------------------


SUITEQL = "SELECT id, tranid, type, foreigntotal, memo, lastmodifieddate FROM transaction ORDER BY lastmodifieddate, id"


def test_netsuite_suiteql_envelope_links_and_string_values(sandbox: Sandbox) -> None:
    total = sandbox.estate.frame("netsuite", "transaction").height
    body = ns(
        sandbox, "/query/v1/suiteql", "POST", params={"limit": 10}, json={"q": SUITEQL}
    ).json()
    assert body["totalResults"] == total
    assert body["count"] == len(body["items"]) == min(10, total)
    assert body["hasMore"] is (total > 10)
    rels = {link["rel"]: link["href"] for link in body["links"]}
    assert rels["next"].endswith("/services/rest/query/v1/suiteql?limit=10&offset=10")
    item = body["items"][0]
    assert set(item) <= {
        "links",
        "id",
        "tranid",
        "type",
        "foreigntotal",
        "memo",
        "lastmodifieddate",
    }
    assert all(isinstance(v, str) for k, v in item.items() if k != "links")
    assert all(v is not None for v in item.values())  # null columns are omitted
    month, day, year = (int(p) for p in item["lastmodifieddate"].split("/"))
    assert dt.date(year, month, day)


def test_netsuite_suiteql_to_char_and_limits(sandbox: Sandbox) -> None:
    q = (
        "SELECT id, TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS modified FROM customer "
        "WHERE lastmodifieddate > TO_TIMESTAMP('2000-01-01 00:00:00', 'YYYY-MM-DD HH24:MI:SS') "
        "ORDER BY lastmodifieddate, id"
    )
    body = ns(sandbox, "/query/v1/suiteql", "POST", params={"limit": 3}, json={"q": q}).json()
    dt.datetime.strptime(body["items"][0]["modified"], "%Y-%m-%d %H:%M:%S")
    too_big = ns(sandbox, "/query/v1/suiteql", "POST", params={"limit": 1001}, json={"q": q})
    assert too_big.status_code == 400
    assert too_big.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_PARAMETER"
    bad_column = ns(sandbox, "/query/v1/suiteql", "POST", json={"q": "SELECT nope FROM customer"})
    assert bad_column.status_code == 400


def test_netsuite_suiteql_stops_at_the_result_cap(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_netsuite, "RESULT_CAP", 20)
    body = ns(
        sandbox,
        "/query/v1/suiteql",
        "POST",
        params={"limit": 10, "offset": 10},
        json={"q": SUITEQL},
    ).json()
    assert body["totalResults"] == 20
    assert body["hasMore"] is False
    beyond = ns(
        sandbox,
        "/query/v1/suiteql",
        "POST",
        params={"limit": 10, "offset": 20},
        json={"q": SUITEQL},
    )
    assert beyond.status_code == 400


def test_netsuite_oauth2_client_credentials_with_jwt_assertion(sandbox: Sandbox) -> None:
    def jwt(claims: dict) -> str:
        part = lambda d: base64.urlsafe_b64encode(orjson.dumps(d)).rstrip(b"=").decode()  # noqa: E731
        return f"{part({'alg': 'PS256', 'typ': 'JWT', 'kid': 'k'})}.{part(claims)}.c2ln"

    url = f"{sandbox.urls['netsuite']}/services/rest/auth/oauth2/v1/token"
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": jwt(
            {"iss": sandbox.credentials["netsuite"]["client_id"], "scope": "rest_webservices"}
        ),
    }
    token = sandbox.http.post(url, data=form).json()
    assert token["token_type"] == "bearer"
    ok = sandbox.http.get(
        f"{sandbox.urls['netsuite']}/services/rest/record/v1/currency/1",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert ok.status_code in (200, 404)  # authenticated either way
    refused = sandbox.http.post(url, data={**form, "client_assertion": jwt({"iss": "intruder"})})
    assert refused.status_code == 400


def test_netsuite_post_is_204_with_location_and_idempotency_key_is_single_use(
    sandbox: Sandbox,
) -> None:
    key = str(uuid.uuid4())
    first = ns(
        sandbox,
        "/record/v1/customer",
        "POST",
        json={"companyName": "Idem Corp"},
        headers={"X-NetSuite-Idempotency-Key": key},
    )
    assert first.status_code == 204
    location = first.headers["Location"]
    assert "/services/rest/record/v1/customer/" in location
    again = ns(
        sandbox,
        "/record/v1/customer",
        "POST",
        json={"companyName": "Idem Corp"},
        headers={"X-NetSuite-Idempotency-Key": key},
    )
    assert again.status_code == 400
    assert again.json()["o:errorDetails"][0]["o:errorCode"] == "IDEMPOTENCY_ERROR"
    assert again.headers["Location"] == location
    record = sandbox.http.get(
        location, headers={"Authorization": ns(sandbox, "/x").request.headers["Authorization"]}
    )
    assert record.json()["companyName"] == "Idem Corp"
    missing = ns(sandbox, "/record/v1/customer/999999999")
    assert missing.status_code == 404
    assert missing.json()["o:errorDetails"][0]["o:errorCode"] == "NONEXISTENT_ID"


# --- Stripe ---------------------------------------------------------------------------------------------


def test_stripe_list_envelope_and_cursor_paging(sandbox: Sandbox) -> None:
    frame = sandbox.estate.frame("stripe", "customers").sort(["created", "id"], descending=True)
    first = stripe(sandbox, "/v1/customers", params={"limit": 3}).json()
    assert first["object"] == "list"
    assert first["url"] == "/v1/customers"
    assert [c["id"] for c in first["data"]] == frame["id"][:3].to_list()
    assert all(c["object"] == "customer" and isinstance(c["created"], int) for c in first["data"])
    after = stripe(
        sandbox, "/v1/customers", params={"limit": 3, "starting_after": first["data"][-1]["id"]}
    ).json()
    assert [c["id"] for c in after["data"]] == frame["id"][3:6].to_list()
    before = stripe(
        sandbox, "/v1/customers", params={"limit": 3, "ending_before": after["data"][0]["id"]}
    ).json()
    assert [c["id"] for c in before["data"]] == frame["id"][:3].to_list()
    assert before["has_more"] is False


def test_stripe_created_filter_and_limit_bounds(sandbox: Sandbox) -> None:
    frame = sandbox.estate.frame("stripe", "invoices")
    cut = frame["created"].sort()[frame.height // 2]
    seconds = int(cut.timestamp())
    body = stripe(sandbox, "/v1/invoices", params={"limit": 100, "created[gte]": seconds}).json()
    assert all(inv["created"] >= seconds for inv in body["data"])
    too_many = stripe(sandbox, "/v1/invoices", params={"limit": 101})
    assert too_many.status_code == 400
    assert too_many.json()["error"]["param"] == "limit"


def test_stripe_events_only_go_back_thirty_days(sandbox: Sandbox) -> None:
    cutoff = int((sandbox.estate.now - dt.timedelta(days=30)).timestamp())
    body = stripe(sandbox, "/v1/events", params={"limit": 100}).json()
    assert all(ev["created"] >= cutoff for ev in body["data"])
    assert all(ev["object"] == "event" and "object" in ev["data"] for ev in body["data"])


def test_stripe_errors_and_missing_objects(sandbox: Sandbox) -> None:
    unauthorized = sandbox.http.get(
        f"{sandbox.urls['stripe']}/v1/invoices", headers={"Authorization": "Bearer sk_test_wrong"}
    )
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["type"] == "invalid_request_error"
    missing = stripe(sandbox, "/v1/invoices/in_missing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"


def test_stripe_invoice_items_and_finalize(sandbox: Sandbox) -> None:
    customer = stripe(sandbox, "/v1/customers", params={"limit": 1}).json()["data"][0]["id"]
    invoice = stripe(
        sandbox,
        "/v1/invoices",
        "POST",
        data={"customer": customer, "collection_method": "send_invoice", "days_until_due": "30"},
    ).json()
    stripe(sandbox, "/v1/invoiceitems", "POST", data={"invoice": invoice["id"], "amount": "12345"})
    final = stripe(sandbox, f"/v1/invoices/{invoice['id']}/finalize", "POST").json()
    assert final["status"] == "open"
    assert final["amount_due"] == 12345
    assert final["status_transitions"]["finalized_at"] is not None


# --- public surface -------------------------------------------------------------------------------


def test_public_surface_of_sandbox_apis_is_pinned() -> None:
    import sandbox.apis

    assert sandbox.apis.__all__ == [
        "KINDS",
        "SIMULATORS",
        "ApiError",
        "FaultConfigError",
        "FaultInjector",
        "FaultPlan",
        "FaultRule",
        "KantataCredentials",
        "KantataSimulator",
        "NetSuiteCredentials",
        "NetSuiteSimulator",
        "QueryError",
        "SalesforceCredentials",
        "SalesforceSimulator",
        "Simulator",
        "StripeCredentials",
        "StripeSimulator",
        "TLSFiles",
        "TokenStore",
        "build_simulators",
        "make_tls_files",
        "parse_soql",
        "parse_suiteql",
    ]
    assert all(hasattr(sandbox.apis, name) for name in sandbox.apis.__all__)


def test_salesforce_unknown_query_locator_is_refused(sandbox: Sandbox, sf_token: str) -> None:
    response = sf(sandbox, sf_token, "query/01gSB9999999999999-2000")
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
