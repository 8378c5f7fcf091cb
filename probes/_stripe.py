"""Stripe probe: a full list by ``created`` to backfill, then ``/v1/events`` for changes.

Stripe has no "modified since" filter. A stream starts with a **backfill**: note ``t0`` (the
newest event's ``created``, Stripe's clock), then list every object newest first with
``starting_after``; each page's cursor records the last id listed, so a crash resumes the list.
When the list ends the cursor becomes ``{"phase": "events", "since": t0}``: every change made
after ``t0`` (including to objects the list already passed) is in the events feed.

**Events**: ``GET /v1/events?created[gte]=since - lookback&types[]=…`` (newest first, paged to
the end), then applied oldest first, one page per 100 events, each page's cursor the ``created``
of its last event. An event carries the object (``data.object``); its ``created`` is the version
stamp, so replaying an older event never overwrites a newer state. Events are kept 30 days: a
cursor older than that (less a margin) is not trusted and the stream is **re-listed**.

Stripe objects carry no modified stamp; a listed object's version stamp is the newest of its own
timestamps (``created``, ``status_transitions.*``). Writes (``create_billing_invoice``) search
``metadata['netsuite_id']`` first and send a deterministic ``Idempotency-Key`` on every POST, so
a retry after a lost answer replays the first answer instead of creating a second invoice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

from probes._base import (
    Health,
    Page,
    ProbeError,
    SourceCount,
    StripeConfig,
    WriteResult,
    decode_cursor,
    encode_cursor,
)
from probes._http import Answer, HttpProbe
from probes._mapping import Col, Spec, to_canonical

SYSTEM = "stripe"
MAX_LIMIT = 100
EVENT_RETENTION = timedelta(days=30)
RETENTION_MARGIN = timedelta(days=1)


def _stamp(record: dict[str, Any]) -> Any:
    """The newest timestamp the object carries: its version stamp when listed."""
    if "_event_created" in record:
        return record["_event_created"]
    stamps = [record.get("created")]
    transitions = record.get("status_transitions")
    if isinstance(transitions, dict):
        stamps += list(transitions.values())
    ints = [s for s in stamps if isinstance(s, int) and not isinstance(s, bool)]
    return max(ints) if ints else record.get("created")


def _meta(key: str) -> Any:
    def get(record: dict[str, Any]) -> Any:
        meta = record.get("metadata")
        return meta.get(key) if isinstance(meta, dict) else None

    return get


def _deleted(record: dict[str, Any]) -> Any:
    return bool(record.get("deleted")) or bool(record.get("_event_deleted"))


def _date_of(key: str, nested: str | None = None) -> Any:
    def get(record: dict[str, Any]) -> Any:
        value = record.get(key)
        if nested is not None:
            value = value.get(nested) if isinstance(value, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC).date().isoformat()
        return value

    return get


def _issued(record: dict[str, Any]) -> Any:
    finalized = _date_of("status_transitions", "finalized_at")(record)
    return finalized if finalized is not None else _date_of("created")(record)


def _nested(key: str, nested: str) -> Any:
    def get(record: dict[str, Any]) -> Any:
        value = record.get(key)
        return value.get(nested) if isinstance(value, dict) else None

    return get


_ID = Col("id", "id", "str", required=True)
_MODIFIED = Col("modified", _stamp, "unix", required=True)
_DELETED = Col("deleted", _deleted, "bool")

SPECS: dict[str, Spec] = {
    "accounts": Spec(
        SYSTEM,
        "accounts",
        "accounts",
        id=_ID,
        modified=_MODIFIED,
        deleted=_DELETED,
        columns=(
            Col("name", "name", "str"),
            Col("erp_customer_id", _meta("netsuite_id"), "str"),
            Col("currency", "currency", "currency", required=True),
        ),
    ),
    "invoices": Spec(
        SYSTEM,
        "invoices",
        "invoices",
        id=_ID,
        modified=_MODIFIED,
        deleted=_DELETED,
        columns=(
            Col("number", "number", "str"),
            Col("customer_ref", "customer", "str", required=True),
            Col("twin_ref", _meta("netsuite_id"), "str"),
            Col("subtotal_minor", "subtotal", "minor"),
            Col("tax_minor", "tax", "minor"),
            Col("total_minor", "total", "minor", required=True),
            Col("amount_remaining_minor", "amount_remaining", "minor"),
            Col("currency", "currency", "currency", required=True),
            Col("status", "status", "str", required=True),
            Col("issued_on", _issued, "date"),
            Col("due_on", _date_of("due_date"), "date"),
        ),
    ),
    "payments": Spec(
        SYSTEM,
        "payments",
        "payments",
        id=_ID,
        modified=_MODIFIED,
        deleted=_DELETED,
        columns=(
            Col("customer_ref", "customer", "str"),
            Col("amount_minor", "amount", "minor", required=True),
            Col("currency", "currency", "currency", required=True),
            Col("status", "status", "str", required=True),
            Col("received_at", "created", "unix"),
            Col("method", lambda r: "stripe", "str"),
            Col("reference", "description", "str"),
        ),
    ),
    "payment_applications": Spec(
        SYSTEM,
        "payment_applications",
        "payment_applications",
        id=_ID,
        modified=_MODIFIED,
        deleted=_DELETED,
        columns=(
            Col("payment_ref", _nested("payment", "payment_intent"), "str", required=True),
            Col("invoice_ref", "invoice", "str", required=True),
            Col("amount_minor", "amount_paid", "minor", required=True),
            Col("currency", "currency", "currency", required=True),
            Col("applied_at", _nested("status_transitions", "paid_at"), "unix"),
        ),
    ),
}

# stream -> (list path, event object type, event types)
OBJECTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "accounts": (
        "customers",
        "customer",
        ("customer.created", "customer.updated", "customer.deleted"),
    ),
    "invoices": (
        "invoices",
        "invoice",
        (
            "invoice.created",
            "invoice.updated",
            "invoice.deleted",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_failed",
            "invoice.payment_succeeded",
            "invoice.marked_uncollectible",
            "invoice.voided",
            "invoice.sent",
            "invoice.overdue",
        ),
    ),
    "payments": (
        "payment_intents",
        "payment_intent",
        (
            "payment_intent.created",
            "payment_intent.succeeded",
            "payment_intent.canceled",
            "payment_intent.processing",
            "payment_intent.payment_failed",
            "payment_intent.requires_action",
            "payment_intent.amount_capturable_updated",
            "payment_intent.partially_funded",
        ),
    ),
    "payment_applications": (
        "invoice_payments",
        "invoice_payment",
        ("invoice_payment.paid",),
    ),
}
SEARCHABLE = {"customers", "invoices", "payment_intents"}


class StripeProbe(HttpProbe):
    """Stripe billing and payments: customers, invoices, payment intents, invoice payments."""

    system: ClassVar[str] = SYSTEM
    streams: ClassVar[tuple[str, ...]] = (
        "accounts",
        "invoices",
        "payments",
        "payment_applications",
    )
    entities: ClassVar[dict[str, str]] = {s: s for s in streams}
    config: StripeConfig

    def __init__(self, client: httpx.AsyncClient, config: StripeConfig, **kwargs: Any) -> None:
        super().__init__(client, config, **kwargs)
        self._base = config.api_base.rstrip("/")

    async def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"}

    async def get(self, path: str, params: Any = None, **kwargs: Any) -> dict[str, Any]:
        answer = await self.call("GET", f"{self._base}{path}", params=params, **kwargs)
        if not isinstance(answer.body, dict):
            raise ProbeError(f"stripe: {path} answered without an object", system=SYSTEM)
        return answer.body

    async def vendor_now(self) -> int | None:
        """Stripe's clock as far as we can see it: the newest event's ``created``."""
        body = await self.get("/v1/events", {"limit": "1"})
        data = body.get("data") or []
        created = data[0].get("created") if data and isinstance(data[0], dict) else None
        return created if isinstance(created, int) else None

    # ------------------------------------------------------------------ reads

    async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        state = decode_cursor(cursor)
        if state.get("phase") == "events" and isinstance(state.get("since"), int):
            now = await self.vendor_now()
            horizon = (now or 0) - int((EVENT_RETENTION - RETENTION_MARGIN).total_seconds())
            if now is None or state["since"] >= horizon:
                async for page in self._events(stream, state["since"]):
                    yield page
                return
            state = {}  # older than the events horizon: list everything again
        async for page in self._backfill(stream, state):
            yield page

    async def _backfill(self, stream: str, state: dict[str, Any]) -> AsyncIterator[Page]:
        path, _, _ = OBJECTS[stream]
        spec = SPECS[stream]
        t0 = state.get("t0")
        if state.get("phase") != "backfill" or not isinstance(t0, int):
            t0 = await self.vendor_now() or 0
            after = None
        else:
            after = state.get("after")
        limit = min(self.settings.page_size or MAX_LIMIT, MAX_LIMIT)
        seen: set[str] = set()
        while True:
            params = {"limit": str(limit)}
            if after:
                params["starting_after"] = after
            body = await self.get(f"/v1/{path}", params, stream=stream)
            data = body.get("data")
            if not isinstance(data, list):
                raise ProbeError("stripe: list without data", system=SYSTEM, stream=stream)
            records = [r for r in data if isinstance(r, dict)]
            fresh = [r for r in records if r.get("id") not in seen]
            seen.update(str(r.get("id")) for r in fresh)
            ids = [r["id"] for r in records if isinstance(r.get("id"), str)]
            if ids:
                after = ids[-1]
            more = bool(body.get("has_more")) and bool(ids)
            frame, quarantine = to_canonical(spec, fresh)
            cursor = (
                encode_cursor(phase="backfill", t0=t0, after=after)
                if more
                else encode_cursor(phase="events", since=t0)
            )
            yield Page(
                system=SYSTEM,
                stream=stream,
                frames={spec.entity: frame},
                quarantine=tuple(quarantine),
                cursor=cursor,
                records_read=len(fresh),
            )
            if not more:
                return

    async def _events(self, stream: str, since: int) -> AsyncIterator[Page]:
        _, object_type, types = OBJECTS[stream]
        spec = SPECS[stream]
        start = since - int(self.settings.lookback.total_seconds())
        events: dict[str, dict[str, Any]] = {}
        after: str | None = None
        while True:
            params: list[tuple[str, str]] = [
                ("limit", str(MAX_LIMIT)),
                ("created[gte]", str(start)),
            ]
            params += [("types[]", t) for t in types]
            if after:
                params.append(("starting_after", after))
            body = await self.get("/v1/events", params, stream=stream)
            data = body.get("data")
            if not isinstance(data, list):
                raise ProbeError("stripe: events list without data", system=SYSTEM, stream=stream)
            for event in data:
                if isinstance(event, dict) and isinstance(event.get("id"), str):
                    events[event["id"]] = event
            if not body.get("has_more") or not data:
                break
            after = data[-1].get("id") if isinstance(data[-1], dict) else None
            if after is None:
                break
        ordered = sorted(events.values(), key=lambda e: (e.get("created") or 0, str(e.get("id"))))
        last = since
        if not ordered:
            yield Page(
                system=SYSTEM, stream=stream, cursor=encode_cursor(phase="events", since=since)
            )
            return
        for begin in range(0, len(ordered), MAX_LIMIT):
            chunk = ordered[begin : begin + MAX_LIMIT]
            records = []
            for event in chunk:
                obj = (event.get("data") or {}).get("object")
                if not isinstance(obj, dict) or obj.get("object") != object_type:
                    # An event without its object cannot be applied: keep it for inspection.
                    obj = {"id": None, "_event": event.get("id")}
                records.append(
                    {
                        **obj,
                        "_event_created": event.get("created"),
                        "_event_deleted": str(event.get("type", "")).endswith(".deleted"),
                    }
                )
            created = [int(e["created"]) for e in chunk if isinstance(e.get("created"), int)]
            if created:
                last = max(last, max(created))
            frame, quarantine = to_canonical(spec, records)
            yield Page(
                system=SYSTEM,
                stream=stream,
                frames={spec.entity: frame},
                quarantine=tuple(quarantine),
                cursor=encode_cursor(phase="events", since=last),
                records_read=len(records),
            )

    async def count(self, stream: str) -> SourceCount:
        self.check_stream(stream)
        path, _, _ = OBJECTS[stream]
        if path in SEARCHABLE:
            body = await self.get(
                f"/v1/{path}/search",
                {"query": "created>0", "limit": "1", "expand[]": "total_count"},
                stream=stream,
            )
            total = body.get("total_count")
            if isinstance(total, int):
                return SourceCount(SYSTEM, stream, self.entities[stream], total)
        # No count in the API: walk the list (ids only matter).
        total, after = 0, None
        while True:
            params = {"limit": str(MAX_LIMIT)}
            if after:
                params["starting_after"] = after
            body = await self.get(f"/v1/{path}", params, stream=stream)
            data = [d for d in body.get("data") or [] if isinstance(d, dict)]
            total += len(data)
            if not body.get("has_more") or not data:
                return SourceCount(SYSTEM, stream, self.entities[stream], total)
            after = data[-1].get("id")

    async def refetch(self, stream: str, source_id: str) -> Page:
        self.check_stream(stream)
        path, _, _ = OBJECTS[stream]
        record = await self.get(f"/v1/{path}/{source_id}", stream=stream, source_id=source_id)
        # Read now: newer than any event already applied, so it wins in the store.
        now = await self.vendor_now()
        if now is not None:
            record = {**record, "_event_created": max(now, _stamp(record) or 0)}
        frame, quarantine = to_canonical(SPECS[stream], [record])
        return Page(
            system=SYSTEM,
            stream=stream,
            frames={SPECS[stream].entity: frame},
            quarantine=tuple(quarantine),
            records_read=1,
        )

    async def health(self) -> Health:
        started = time.monotonic()
        try:
            await self.get("/v1/customers", {"limit": "1"})
        except ProbeError as exc:
            return Health(SYSTEM, False, time.monotonic() - started, str(exc))
        return Health(SYSTEM, True, time.monotonic() - started, "ok")

    # ------------------------------------------------------------------ writes

    async def _post(self, path: str, data: dict[str, str], purpose: str) -> Answer:
        # The key is derived from what the request means and its parameters: a retry (even
        # from another process after a crash) replays the first answer; other parameters get
        # another key instead of Stripe's idempotency_error.
        digest = hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()[:16]
        return await self.call(
            "POST",
            f"{self._base}{path}",
            data=data,
            headers={"Idempotency-Key": f"o2c-{purpose}-{digest}"},
        )

    async def find_invoice(self, netsuite_id: str) -> dict[str, Any] | None:
        body = await self.get(
            "/v1/invoices/search", {"query": f"metadata['netsuite_id']:'{netsuite_id}'"}
        )
        found = [d for d in body.get("data") or [] if isinstance(d, dict)]
        return found[0] if found else None

    async def create_billing_invoice(
        self,
        netsuite_id: str,
        *,
        customer: str,
        amount_minor: int,
        currency: str,
        due_date: datetime | None = None,
        description: str | None = None,
    ) -> WriteResult:
        """Push an ERP invoice to billing once: look up by ``metadata['netsuite_id']``, then
        create (draft), add its amount, finalize, each POST with a deterministic key."""
        existing = await self.find_invoice(netsuite_id)
        created = existing is None
        invoice = existing
        replayed = False
        if invoice is None:
            params = {
                "customer": customer,
                "currency": currency.lower(),
                "collection_method": "send_invoice",
                "metadata[netsuite_id]": netsuite_id,
            }
            if due_date is not None:
                params["due_date"] = str(int(due_date.timestamp()))
            else:
                params["days_until_due"] = "30"
            answer = await self._post("/v1/invoices", params, f"invoice-{netsuite_id}")
            replayed = answer.headers.get("idempotent-replayed") == "true"
            invoice = answer.body if isinstance(answer.body, dict) else {}
        invoice_id = invoice.get("id")
        if not isinstance(invoice_id, str):
            raise ProbeError("stripe: invoice create answered without an id", system=SYSTEM)
        if invoice.get("status") == "draft":
            if not invoice.get("total"):
                item = {
                    "invoice": invoice_id,
                    "amount": str(amount_minor),
                    "currency": currency.lower(),
                }
                if description:
                    item["description"] = description
                await self._post("/v1/invoiceitems", item, f"item-{netsuite_id}")
            await self._post(f"/v1/invoices/{invoice_id}/finalize", {}, f"finalize-{netsuite_id}")
        return WriteResult(
            SYSTEM,
            "invoice",
            invoice_id,
            created=created,
            external_id=netsuite_id,
            replayed=replayed,
        )
