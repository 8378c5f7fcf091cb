"""The remediation catalogue: which action repairs which break type, what it reads, the calls it makes.

An action is a small class (registered explicitly in ``CATALOGUE``): ``inputs`` reads what it
needs from the store, ``calls`` lists the exact API calls for a dry run, ``run`` makes them
through the vendor's probe. Every write looks its target up by our external reference before it
creates, so neither a lost answer nor a crash between the write and our bookkeeping can create a
second record:

- won deal without project -> create the Kantata workspace (external reference = opportunity id);
- customer missing in the ERP -> NetSuite upsert by externalId (= the CRM account id);
- ERP invoice missing in billing -> the Stripe invoice (``metadata[netsuite_id]``, Idempotency-Key
  derived from the invoice and the request's parameters, so a retry from any process replays);
- invoice status mismatch -> targeted re-fetch of the records involved (no write).

Every other break type is manual: no action, never a write.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, ClassVar

import polars as pl

import store
from probes import Probe
from reconciler.resync._errors import ResyncError


@dataclass(frozen=True)
class ApiCall:
    """One vendor API call of a plan: method, vendor-relative path, parameters or body."""

    system: str
    method: str
    path: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    note: str = ""

    def describe(self) -> str:
        text = f"{self.system} {self.method} {self.path}"
        if self.headers:
            text += " " + " ".join(f"[{k}: {v}]" for k, v in self.headers.items())
        if self.body is not None:
            text += " " + json.dumps(self.body, sort_keys=True, default=str)
        if self.note:
            text += f"  # {self.note}"
        return text


@dataclass(frozen=True)
class Repair:
    """What an action did: the record it wrote (or found) and the records to re-fetch."""

    result_id: str | None
    created: bool
    refetch: tuple[tuple[str, str, str], ...]
    """(system, stream, source id) of each record whose new state confirms the repair."""


@dataclass(frozen=True)
class BreakRef:
    """A break of the register as an action sees it."""

    break_id: str
    break_type: str
    remediation: str | None
    status: str
    records: tuple[tuple[str, str, str], ...]
    """(system, entity, source id) of every record involved; the first is the primary one."""
    amount_minor: int | None
    currency: str | None
    amount_reporting_minor: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BreakRef:
        try:
            items = json.loads(row.get("records") or "[]")
        except ValueError:
            items = []
        records = tuple(
            (str(i.get("system")), str(i.get("entity")), str(i.get("id")))
            for i in items
            if isinstance(i, dict) and i.get("id") is not None and not i.get("suggested")
        )
        return cls(
            break_id=str(row["break_id"]),
            break_type=str(row["break_type"]),
            remediation=row.get("remediation"),
            status=str(row.get("status")),
            records=records,
            amount_minor=row.get("amount_minor"),
            currency=row.get("currency"),
            amount_reporting_minor=row.get("amount_reporting_minor"),
        )

    @property
    def amount_at_risk(self) -> int | None:
        """Reporting-currency minor units when known, else the break's own amount."""
        if self.amount_reporting_minor is not None:
            return self.amount_reporting_minor
        return self.amount_minor

    def primary(self, entity: str) -> tuple[str, str]:
        """(system, id) of the primary record, which must be of ``entity``."""
        if not self.records or self.records[0][1] != entity:
            raise ResyncError(
                f"break {self.break_id} has no primary {entity} record", break_id=self.break_id
            )
        system, _, source_id = self.records[0]
        return system, source_id


class StoreView:
    """Canonical records read from the store once per cycle (each entity at most once)."""

    def __init__(self, db: store.Store) -> None:
        self.db = db
        self._frames: dict[str, pl.DataFrame] = {}

    def frame(self, entity: str) -> pl.DataFrame:
        if entity not in self._frames:
            self._frames[entity] = self.db.read_frame(entity)
        return self._frames[entity]

    def row(self, entity: str, system: str, source_id: str) -> dict[str, Any] | None:
        found = self.frame(entity).filter(
            (pl.col("source_system") == system) & (pl.col("source_id") == source_id)
        )
        return found.row(0, named=True) if found.height else None

    def forget(self) -> None:
        self._frames.clear()


def _need(value: Any, what: str, brk: BreakRef) -> Any:
    if value is None or value == "":
        raise ResyncError(
            f"break {brk.break_id}: {what} is not in the store", break_id=brk.break_id
        )
    return value


class Action(ABC):
    """One kind of repair, through one system's API."""

    name: ClassVar[str]
    system: ClassVar[str]
    writes: ClassVar[bool]

    @abstractmethod
    def inputs(self, brk: BreakRef, data: StoreView) -> dict[str, Any]:
        """What the repair needs, from the store; ResyncError when something is missing."""

    @abstractmethod
    def calls(self, brk: BreakRef, inputs: Mapping[str, Any]) -> list[ApiCall]:
        """The API calls ``run`` makes, in order (lookups included), for a dry run."""

    @abstractmethod
    async def run(
        self, probes: Mapping[str, Probe], brk: BreakRef, inputs: Mapping[str, Any]
    ) -> Repair:
        """Make the repair; raises ProbeError when the vendor fails, ResyncError on our side."""

    def probe(self, probes: Mapping[str, Probe], system: str | None = None) -> Any:
        wanted = system or self.system
        if wanted not in probes:
            raise ResyncError(f"{self.name}: no probe for {wanted} is configured")
        return probes[wanted]


# --------------------------------------------------------------------------- Kantata


class CreateProject(Action):
    """Create the PSA project of a won deal, linked to it by an external reference."""

    name = "create_project"
    system = "kantata"
    writes = True

    def inputs(self, brk: BreakRef, data: StoreView) -> dict[str, Any]:
        system, opportunity_id = brk.primary("opportunities")
        opp = _need(data.row("opportunities", system, opportunity_id), "the opportunity", brk)
        won = opp.get("won_at")
        name = opp.get("name") or "Project"
        return {
            "opportunity_id": opportunity_id,
            # The title carries the opportunity id: the fallback key if a create's answer was
            # lost before the external reference existed.
            "title": f"{name} [{opportunity_id}]"[:255],
            "price_minor": int(_need(opp.get("amount_minor"), "the deal amount", brk)),
            "currency": str(opp["currency"]).upper(),
            "start_date": won.date().isoformat() if isinstance(won, datetime) else None,
        }

    def calls(self, brk: BreakRef, inputs: Mapping[str, Any]) -> list[ApiCall]:
        workspace = {
            k: v
            for k, v in {
                "title": inputs["title"], "price_in_cents": inputs["price_minor"],
                "currency": inputs["currency"], "start_date": inputs["start_date"],
            }.items()
            if v is not None
        }  # fmt: skip
        opp = inputs["opportunity_id"]
        return [
            ApiCall(
                "kantata", "GET",
                "/api/v1/workspaces.json?external_reference_service_model=Opportunity"
                f"&external_reference_service_model_ref={opp}&per_page=2",
                note="look the project up by the deal's external reference",
            ),
            ApiCall(
                "kantata", "GET", "/api/v1/workspaces.json", {"title": inputs["title"], "per_page": 2},
                note="then by title (a create whose answer was lost)",
            ),
            ApiCall("kantata", "POST", "/api/v1/workspaces.json", {"workspace": workspace},
                    note="only when neither lookup found it"),
            ApiCall(
                "kantata", "POST", "/api/v1/external_references/create_or_update.json",
                {"external_reference": {
                    "service_name": "Salesforce", "service_model": "Opportunity",
                    "service_model_ref": opp, "subject_type": "Workspace",
                    "subject_id": "<workspace id>", "status": "synced",
                    "external_status": "Closed Won",
                }},
                note="upsert: safe to repeat",
            ),
        ]  # fmt: skip

    async def run(
        self, probes: Mapping[str, Probe], brk: BreakRef, inputs: Mapping[str, Any]
    ) -> Repair:
        result = await self.probe(probes).create_project(
            inputs["opportunity_id"],
            title=inputs["title"],
            price_minor=inputs["price_minor"],
            currency=inputs["currency"],
            start_date=inputs["start_date"],
        )
        return Repair(
            result.source_id, result.created, (("kantata", "projects", result.source_id),)
        )


# --------------------------------------------------------------------------- NetSuite


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class UpsertErpCustomer(Action):
    """Upsert the ERP customer of a CRM account by externalId (= the CRM account id)."""

    name = "upsert_erp_customer"
    system = "netsuite"
    writes = True

    def inputs(self, brk: BreakRef, data: StoreView) -> dict[str, Any]:
        system, account_id = brk.primary("accounts")
        account = _need(data.row("accounts", system, account_id), "the CRM account", brk)
        return {
            "account_id": account_id,
            "company_name": _need(account.get("name"), "the account name", brk),
            "currency": str(account["currency"]).upper(),
        }

    def calls(self, brk: BreakRef, inputs: Mapping[str, Any]) -> list[ApiCall]:
        currency, account = inputs["currency"], inputs["account_id"]
        return [
            ApiCall("netsuite", "POST", "/query/v1/suiteql",
                    {"q": f"SELECT id FROM currency WHERE symbol = {_quote(currency)}"},
                    note="the currency's internal id"),
            ApiCall("netsuite", "POST", "/query/v1/suiteql",
                    {"q": "SELECT id FROM subsidiary WHERE currency = <currency id> ORDER BY id"},
                    note="the subsidiary keeping its books in that currency"),
            ApiCall("netsuite", "POST", "/query/v1/suiteql",
                    {"q": f"SELECT id FROM customer WHERE externalid = {_quote(account)}"},
                    note="was it there before (created or updated)"),
            ApiCall("netsuite", "PUT", f"/record/v1/customer/eid:{account}",
                    {"companyName": inputs["company_name"], "subsidiary": {"id": "<subsidiary id>"},
                     "currency": {"id": "<currency id>"}},
                    note="upsert by externalId: a retry updates, never duplicates"),
        ]  # fmt: skip

    async def run(
        self, probes: Mapping[str, Probe], brk: BreakRef, inputs: Mapping[str, Any]
    ) -> Repair:
        probe = self.probe(probes)
        currency = await probe.suiteql(
            f"SELECT id FROM currency WHERE symbol = {_quote(inputs['currency'])}", limit=1
        )
        if not currency["items"]:
            raise ResyncError(
                f"netsuite has no currency {inputs['currency']}", break_id=brk.break_id
            )
        currency_id = str(currency["items"][0]["id"])
        subsidiary = await probe.suiteql(
            f"SELECT id FROM subsidiary WHERE currency = {_quote(currency_id)} ORDER BY id", limit=1
        )
        if not subsidiary["items"]:
            raise ResyncError(
                f"netsuite has no subsidiary in {inputs['currency']}", break_id=brk.break_id
            )
        result = await probe.upsert_customer(
            inputs["account_id"],
            company_name=inputs["company_name"],
            subsidiary_id=str(subsidiary["items"][0]["id"]),
            currency_id=currency_id,
        )
        return Repair(
            result.source_id, result.created, (("netsuite", "accounts", result.source_id),)
        )


# --------------------------------------------------------------------------- Stripe


def stripe_idempotency_key(purpose: str, data: Mapping[str, str]) -> str:
    """The Idempotency-Key the Stripe probe sends for a POST (same derivation, for the plan)."""
    digest = hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()[:16]
    return f"o2c-{purpose}-{digest}"


class PushInvoiceToBilling(Action):
    """Create the billing invoice of an ERP invoice that never reached billing."""

    name = "push_invoice_to_billing"
    system = "stripe"
    writes = True

    def inputs(self, brk: BreakRef, data: StoreView) -> dict[str, Any]:
        system, invoice_id = brk.primary("invoices")
        invoice = _need(data.row("invoices", system, invoice_id), "the ERP invoice", brk)
        customer_ref = _need(invoice.get("customer_ref"), "the invoice's ERP customer", brk)
        billing = data.frame("accounts").filter(
            (pl.col("source_system") == self.system) & (pl.col("erp_customer_id") == customer_ref)
        )
        due = invoice.get("due_on")
        return {
            "netsuite_id": invoice_id,
            "erp_customer_id": customer_ref,
            "customer": billing["source_id"].sort()[0] if billing.height else None,
            "amount_minor": int(_need(invoice.get("total_minor"), "the invoice total", brk)),
            "currency": str(invoice["currency"]).upper(),
            "due_date": datetime.combine(due, time(), tzinfo=UTC)
            if isinstance(due, date)
            else None,
            "description": invoice.get("number"),
        }

    def _create_params(self, inputs: Mapping[str, Any], customer: str) -> dict[str, str]:
        params = {
            "customer": customer,
            "currency": inputs["currency"].lower(),
            "collection_method": "send_invoice",
            "metadata[netsuite_id]": inputs["netsuite_id"],
        }
        if inputs["due_date"] is not None:
            params["due_date"] = str(int(inputs["due_date"].timestamp()))
        else:
            params["days_until_due"] = "30"
        return params

    def calls(self, brk: BreakRef, inputs: Mapping[str, Any]) -> list[ApiCall]:
        netsuite_id = inputs["netsuite_id"]
        customer = inputs["customer"]
        out = []
        if customer is None:
            customer = "<customer id>"
            out.append(
                ApiCall("stripe", "GET", "/v1/customers/search",
                        {"query": f"metadata['netsuite_id']:'{inputs['erp_customer_id']}'"},
                        note="the billing customer of the ERP customer (not in the store)")
            )  # fmt: skip
        create = self._create_params(inputs, customer)
        item = {"invoice": "<invoice id>", "amount": str(inputs["amount_minor"]),
                "currency": inputs["currency"].lower()}  # fmt: skip
        if inputs["description"]:
            item["description"] = str(inputs["description"])
        out += [
            ApiCall("stripe", "GET", "/v1/invoices/search",
                    {"query": f"metadata['netsuite_id']:'{netsuite_id}'"},
                    note="look the invoice up first"),
            ApiCall("stripe", "POST", "/v1/invoices", create,
                    {"Idempotency-Key": stripe_idempotency_key(f"invoice-{netsuite_id}", create)},
                    note="only when the lookup found none"),
            ApiCall("stripe", "POST", "/v1/invoiceitems", item,
                    {"Idempotency-Key": f"o2c-item-{netsuite_id}-<digest of the parameters>"},
                    note="while the draft has no amount"),
            ApiCall("stripe", "POST", "/v1/invoices/<invoice id>/finalize", {},
                    {"Idempotency-Key": stripe_idempotency_key(f"finalize-{netsuite_id}", {})},
                    note="while it is a draft"),
        ]  # fmt: skip
        return out

    async def run(
        self, probes: Mapping[str, Probe], brk: BreakRef, inputs: Mapping[str, Any]
    ) -> Repair:
        probe = self.probe(probes)
        customer = inputs["customer"]
        if customer is None:
            body = await probe.get(
                "/v1/customers/search",
                {"query": f"metadata['netsuite_id']:'{inputs['erp_customer_id']}'"},
            )
            found = [d for d in body.get("data") or [] if isinstance(d, dict)]
            if not found:
                raise ResyncError(
                    f"no billing customer for ERP customer {inputs['erp_customer_id']}",
                    break_id=brk.break_id,
                )
            customer = str(sorted(d["id"] for d in found)[0])
        result = await probe.create_billing_invoice(
            inputs["netsuite_id"],
            customer=customer,
            amount_minor=inputs["amount_minor"],
            currency=inputs["currency"],
            due_date=inputs["due_date"],
            description=inputs["description"],
        )
        return Repair(result.source_id, result.created, (("stripe", "invoices", result.source_id),))


# --------------------------------------------------------------------------- re-fetch


class RefetchRecords(Action):
    """Read the records of the break again (the store may hold a stale version); no write."""

    name = "refetch_records"
    system = "*"
    writes = False

    def inputs(self, brk: BreakRef, data: StoreView) -> dict[str, Any]:
        if not brk.records:
            raise ResyncError(f"break {brk.break_id} names no record", break_id=brk.break_id)
        return {"records": [list(r) for r in brk.records]}

    def calls(self, brk: BreakRef, inputs: Mapping[str, Any]) -> list[ApiCall]:
        return [
            ApiCall(system, "GET", f"<{entity} record {source_id}>", note="Probe.refetch")
            for system, entity, source_id in inputs["records"]
        ]

    async def run(
        self, probes: Mapping[str, Probe], brk: BreakRef, inputs: Mapping[str, Any]
    ) -> Repair:
        wanted = []
        for system, entity, source_id in inputs["records"]:
            probe = self.probe(probes, system)
            if entity not in probe.streams:
                raise ResyncError(
                    f"{system} has no stream {entity} to re-fetch", break_id=brk.break_id
                )
            wanted.append((system, entity, source_id))
        return Repair(None, False, tuple(wanted))


CATALOGUE: dict[str, Action] = {
    "won_deal_without_project": CreateProject(),
    "customer_missing_in_erp": UpsertErpCustomer(),
    "invoice_missing_in_billing": PushInvoiceToBilling(),
    "invoice_status_mismatch": RefetchRecords(),
}
"""Break type -> the action that repairs it. Types not listed are manual (never written)."""

ACTIONS: dict[str, Action] = {a.name: a for a in CATALOGUE.values()}


def action_system(action: Action, brk: BreakRef) -> str:
    """The system an action calls for this break (a re-fetch calls its primary record's)."""
    if action.system != "*":
        return action.system
    return brk.records[0][0] if brk.records else "unknown"


def idempotency_key(break_id: str, action: str) -> str:
    """Our key of one repair: the same break and action give the same key, always."""
    return "o2c-" + hashlib.sha256(f"{break_id}\x1f{action}".encode()).hexdigest()[:40]
