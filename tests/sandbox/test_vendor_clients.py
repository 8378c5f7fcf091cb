"""The vendors' own Python clients work against the simulators for the operations we support."""

from __future__ import annotations

import asyncio
import uuid
import warnings

import polars as pl
import pytest
import requests
import stripe
from simple_salesforce import Salesforce

from sandbox.server import Sandbox

with warnings.catch_warnings():
    # netsuite imports authlib's httpx integration, which warns about itself on import.
    import authlib.deprecate  # noqa: F401  installs an "always" filter for its own warnings at import...

    warnings.simplefilter("ignore", DeprecationWarning)  # ...which this one overrides
    from netsuite import Config, NetSuite, TokenAuth
    from netsuite.exceptions import NetsuiteAPIRequestError
    from netsuite.rest_api import NetSuiteRestApi

# netsuite 0.12 passes raw bytes as httpx `data=` and signs with oauthlib's deprecated
# sign_hmac_sha256: both warn on every call, neither is ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:use sign_hmac_sha256_with_client:DeprecationWarning"),
]


@pytest.fixture
def sf(sandbox: Sandbox, sf_token: str) -> Salesforce:
    session = requests.Session()
    session.verify = str(sandbox.ca_file)
    # requests lets REQUESTS_CA_BUNDLE override session.verify; the sandbox CA must win.
    session.trust_env = False
    return Salesforce(instance_url=sandbox.urls["salesforce"], session_id=sf_token, session=session)


@pytest.fixture
def stripe_client(sandbox: Sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(
        sandbox.credentials["stripe"]["secret_key"],
        base_addresses={"api": sandbox.urls["stripe"]},
        max_network_retries=0,
    )


class LoopbackRestApi(NetSuiteRestApi):
    """The netsuite lib builds https://<account>.suitetalk.api.netsuite.com URLs; point it home."""

    base_url = ""

    def _make_url(self, subpath: str) -> str:
        return f"{self.base_url}/services/rest{subpath}"


@pytest.fixture
def ns_api(sandbox: Sandbox) -> LoopbackRestApi:
    creds = sandbox.credentials["netsuite"]
    config = Config(
        account=creds["account"],
        auth=TokenAuth(
            consumer_key=creds["consumer_key"],
            consumer_secret=creds["consumer_secret"],
            token_id=creds["token_id"],
            token_secret=creds["token_secret"],
        ),
    )
    api = LoopbackRestApi(config)
    api.base_url = sandbox.urls["netsuite"]
    assert isinstance(
        NetSuite(config).rest_api, NetSuiteRestApi
    )  # the class we subclass is the lib's
    return api


# --- simple-salesforce (over TLS, verifying the sandbox CA) ---------------------------------------


def test_simple_salesforce_query_returns_records_in_modstamp_order(sf: Salesforce) -> None:
    result = sf.query(
        "SELECT Id, Name, StageName, Amount, SystemModstamp FROM Opportunity "
        "WHERE SystemModstamp > 2000-01-01T00:00:00Z ORDER BY SystemModstamp, Id LIMIT 50"
    )
    records = result["records"]
    assert result["done"] is True
    assert 0 < len(records) <= 50
    assert records[0]["attributes"]["type"] == "Opportunity"
    stamps = [(r["SystemModstamp"], r["Id"]) for r in records]
    assert stamps == sorted(stamps)
    assert sf.api_usage["api-usage"].used >= 1  # parsed from Sforce-Limit-Info


def test_simple_salesforce_query_all_follows_query_locators(
    sf: Salesforce, sandbox: Sandbox
) -> None:
    expected = sandbox.estate.frame("salesforce", "Opportunity").filter(~pl.col("IsDeleted")).height
    first = sf.query(
        "SELECT Id FROM Opportunity ORDER BY SystemModstamp, Id",
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    assert first["totalSize"] == expected
    assert first["done"] is (expected <= 200)
    everything = sf.query_all(
        "SELECT Id FROM Opportunity ORDER BY SystemModstamp, Id",
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    ids = [r["Id"] for r in everything["records"]]
    assert len(ids) == expected == len(set(ids))


def test_simple_salesforce_upsert_creates_then_updates(sf: Salesforce) -> None:
    name = f"Upsert Co {uuid.uuid4().hex[:8]}"
    assert sf.Account.upsert(f"Name/{name}", {"Industry": "Consulting"}) == 201
    assert sf.Account.upsert(f"Name/{name}", {"Industry": "Software"}) == 200
    found = sf.query(f"SELECT Id, Name, Industry FROM Account WHERE Name = '{name}'")
    assert [r["Industry"] for r in found["records"]] == ["Software"]
    record = sf.Account.get(found["records"][0]["Id"])
    assert record["Name"] == name


# --- stripe (StripeClient with base_addresses) ----------------------------------------------------


def test_stripe_list_and_auto_paging_iter_walk_every_invoice(
    stripe_client: stripe.StripeClient, sandbox: Sandbox
) -> None:
    expected = sandbox.estate.frame("stripe", "invoices").height
    page = stripe_client.v1.invoices.list(params={"limit": 7})
    assert len(page.data) == min(7, expected)
    assert all(isinstance(inv, stripe.Invoice) for inv in page.data)
    seen = [inv.id for inv in page.auto_paging_iter()]
    assert len(seen) == expected == len(set(seen))


def test_stripe_create_with_idempotency_key_replays_the_first_response(
    stripe_client: stripe.StripeClient,
) -> None:
    key = f"test-{uuid.uuid4()}"
    params = {
        "name": "Replay Ltd",
        "email": "ap@replay.example",
        "metadata": {"netsuite_id": "9001"},
    }
    first = stripe_client.v1.customers.create(params=params, options={"idempotency_key": key})
    again = stripe_client.v1.customers.create(params=params, options={"idempotency_key": key})
    assert first.id == again.id
    assert first.metadata["netsuite_id"] == "9001"
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.customers.create(
            params={**params, "name": "Other"}, options={"idempotency_key": key}
        )


def test_stripe_invoice_create_and_search_by_netsuite_id(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = stripe_client.v1.customers.list(params={"limit": 1}).data[0]
    ns_id = f"NS-{uuid.uuid4().hex[:6]}"
    invoice = stripe_client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "metadata": {"netsuite_id": ns_id},
        },
        options={"idempotency_key": f"inv-{ns_id}"},
    )
    assert invoice.status == "draft"
    found = stripe_client.v1.invoices.search(params={"query": f"metadata['netsuite_id']:'{ns_id}'"})
    assert [inv.id for inv in found.data] == [invoice.id]


# --- netsuite (TBA OAuth 1 headers; URL override by subclass) ---------------------------------------


def test_netsuite_suiteql_pages_with_limit_and_offset(ns_api: LoopbackRestApi) -> None:
    query = (
        "SELECT id, tranid, type, foreigntotal, lastmodifieddate FROM transaction "
        "WHERE lastmodifieddate > TO_TIMESTAMP('2000-01-01 00:00:00', 'YYYY-MM-DD HH24:MI:SS') "
        "AND type IN ('CustInvc') ORDER BY lastmodifieddate, id"
    )

    async def walk() -> tuple[int, list[dict]]:
        items: list[dict] = []
        offset, total = 0, 0
        while True:
            page = await ns_api.suiteql(query, limit=100, offset=offset)
            total = page["totalResults"]
            items += page["items"]
            if not page["hasMore"]:
                return total, items
            offset += 100

    total, items = asyncio.run(walk())
    assert len(items) == total
    assert all(
        item["type"] == "CustInvc" and isinstance(item["foreigntotal"], str) for item in items
    )
    assert len({item["id"] for item in items}) == total


def test_netsuite_record_put_by_external_id_upserts_and_get_reads_it(
    ns_api: LoopbackRestApi,
) -> None:
    eid = f"SF-{uuid.uuid4().hex[:10]}"

    async def scenario() -> tuple[dict, dict]:
        assert (
            await ns_api.put(f"/record/v1/customer/eid:{eid}", json={"companyName": "Upsert Inc"})
            is None
        )
        await ns_api.put(
            f"/record/v1/customer/eid:{eid}", json={"companyName": "Upsert Incorporated"}
        )
        by_eid = await ns_api.get(f"/record/v1/customer/eid:{eid}")
        by_id = await ns_api.get(f"/record/v1/customer/{by_eid['id']}")
        return by_eid, by_id

    by_eid, by_id = asyncio.run(scenario())
    assert by_eid == by_id
    assert by_eid["companyName"] == "Upsert Incorporated"
    assert by_eid["externalId"] == eid


def test_netsuite_rejects_bad_tba_credentials(sandbox: Sandbox) -> None:
    config = Config(
        account=sandbox.credentials["netsuite"]["account"],
        auth=TokenAuth(consumer_key="wrong", consumer_secret="x", token_id="y", token_secret="z"),
    )
    api = LoopbackRestApi(config)
    api.base_url = sandbox.urls["netsuite"]
    with pytest.raises(NetsuiteAPIRequestError) as err:
        asyncio.run(api.suiteql("SELECT id FROM customer"))
    assert err.value.status_code == 401
