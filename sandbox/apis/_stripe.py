"""Stripe API v1 simulator: secret-key auth, cursor lists (newest first) with created filters and
path `url`s, metadata search, the 30-day events feed, form-encoded creates with Idempotency-Key
replay, invoice items and finalisation, and Stripe's error envelope."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import polars as pl
from starlette.responses import Response

from sandbox.apis._base import JSON, ApiError, Req, Simulator, _Endpoint
from sandbox.apis._faults import FaultPlan
from sandbox.apis._render import stripe_rows

VENDOR = "stripe"
API_VERSION = "2026-06-24.dahlia"
EVENT_RETENTION = dt.timedelta(days=30)
LISTS = ("customers", "invoices", "payment_intents", "invoice_payments", "events")
SEARCHABLE = ("customers", "invoices", "payment_intents")
_PREFIX = {
    "customers": "cus",
    "invoices": "in",
    "payment_intents": "pi",
    "invoice_payments": "inpay",
    "events": "evt",
}
_EVENT_FRAMES = {
    "customer": "customers",
    "invoice": "invoices",
    "payment_intent": "payment_intents",
    "invoice_payment": "invoice_payments",
}
# List filters beyond created/limit/cursors: parameter -> column.
_FILTERS = {
    "customers": ("email",),
    "invoices": ("customer", "status", "collection_method"),
    "payment_intents": ("customer",),
    "invoice_payments": ("invoice", "status"),
    "events": ("type",),
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    402: "card_error",
    404: "invalid_request_error",
    409: "idempotency_error",
    429: "invalid_request_error",
}


@dataclass(frozen=True)
class StripeCredentials:
    secret_key: str = "sk_test_sandbox0000000000000000"


@dataclass
class _Saved:
    fingerprint: str
    status: int
    body: bytes


class StripeSimulator(Simulator):
    vendor: ClassVar[str] = VENDOR

    def __init__(
        self,
        estate: Any,
        faults: FaultPlan | None = None,
        credentials: StripeCredentials | None = None,
    ):
        self.credentials = credentials or StripeCredentials()
        self._idempotency: dict[str, _Saved] = {}
        self._write_lock = threading.Lock()
        super().__init__(estate, faults)

    def endpoints(self) -> list[_Endpoint]:
        eps: list[_Endpoint] = []
        for obj in SEARCHABLE:
            eps.append(
                _Endpoint(f"{obj}.search", f"/v1/{obj}/search", ["GET"], self._searcher(obj))
            )
        for obj in LISTS:
            eps.append(_Endpoint(f"{obj}.list", f"/v1/{obj}", ["GET"], self._lister(obj)))
            eps.append(
                _Endpoint(f"{obj}.retrieve", f"/v1/{obj}/{{id}}", ["GET"], self._retriever(obj))
            )
        eps += [
            _Endpoint(
                "customers.create", "/v1/customers", ["POST"], self.create_customer, write=True
            ),
            _Endpoint(
                "customers.update", "/v1/customers/{id}", ["POST"], self.update_customer, write=True
            ),
            _Endpoint("invoices.create", "/v1/invoices", ["POST"], self.create_invoice, write=True),
            _Endpoint(
                "invoices.update", "/v1/invoices/{id}", ["POST"], self.update_invoice, write=True
            ),
            _Endpoint(
                "invoices.finalize",
                "/v1/invoices/{id}/finalize",
                ["POST"],
                self.finalize_invoice,
                write=True,
            ),
            _Endpoint(
                "invoiceitems.create",
                "/v1/invoiceitems",
                ["POST"],
                self.create_invoice_item,
                write=True,
            ),
        ]
        return eps

    def error_response(self, error: ApiError) -> Response:
        err: dict[str, Any] = {
            "type": error.extra.get("type") or _ERROR_TYPES.get(error.status, "api_error"),
            "message": error.message,
        }
        code = error.extra.get("stripe_code")
        if code:
            err["code"] = code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if "param" in error.extra:
            err["param"] = error.extra["param"]
        return JSON({"error": err}, status_code=error.status)

    def rate_limit_error(self) -> ApiError:
        return ApiError(
            429,
            "RATE_LIMITED",
            "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            stripe_code="rate_limit",
        )

    def authenticate(self, req: Req) -> None:
        header = req.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        key = value.strip()
        if scheme.lower() == "basic":
            key = base64.b64decode(key).decode().partition(":")[0]
        if scheme.lower() not in ("bearer", "basic") or key != self.credentials.secret_key:
            shown = (key[:8] + "*" * 8 + key[-4:]) if len(key) > 12 else key
            raise ApiError(401, "UNAUTHORIZED", f"Invalid API Key provided: {shown}")

    def decorate(self, req: Req | None, response: Response) -> None:
        response.headers["Request-Id"] = "req_" + secrets.token_hex(7)
        response.headers["Stripe-Version"] = API_VERSION

    # --- rendering ----------------------------------------------------------------------------------

    def _frame(self, obj: str) -> pl.DataFrame:
        with self.estate.lock:
            return self.estate.frame(VENDOR, obj)

    def _render(self, obj: str, frame: pl.DataFrame) -> list[dict[str, Any]]:
        if obj == "events":
            return self._render_events(frame)
        rows = stripe_rows(frame)
        if obj == "invoices":
            for row in rows:
                row["lines"] = {
                    "object": "list",
                    "data": [],
                    "has_more": False,
                    "url": f"/v1/invoices/{row['id']}/lines",
                }
        return rows

    def _render_events(self, frame: pl.DataFrame) -> list[dict[str, Any]]:
        objects: dict[tuple[str, str], dict[str, Any]] = {}
        for otype, group in frame.group_by("data_object_type"):
            target = _EVENT_FRAMES.get(str(otype[0]))
            if target is None:
                continue
            found = self._frame(target).filter(
                pl.col("id").is_in(group["data_object_id"].implode())
            )
            for row in self._render(target, found):
                objects[(str(otype[0]), row["id"])] = row
        out = []
        for ev in frame.to_dicts():
            out.append(
                {
                    "id": ev["id"],
                    "object": "event",
                    "api_version": ev.get("api_version") or API_VERSION,
                    "created": int(ev["created"].timestamp()),
                    "data": {"object": objects.get((ev["data_object_type"], ev["data_object_id"]))},
                    "livemode": bool(ev.get("livemode")),
                    "pending_webhooks": 0,
                    "request": {
                        "id": ev.get("request_id"),
                        "idempotency_key": ev.get("request_idempotency_key"),
                    },
                    "type": ev["type"],
                }
            )
        return out

    # --- lists and retrieval -----------------------------------------------------------------------

    def _lister(self, obj: str):  # type: ignore[no-untyped-def]
        return lambda req: self.list_objects(obj, req)

    def _retriever(self, obj: str):  # type: ignore[no-untyped-def]
        def handler(req: Req) -> Response:
            rid = req.path_params["id"]
            found = self._frame(obj).filter(pl.col("id") == rid)
            if found.height == 0:
                raise ApiError(
                    404,
                    "NOT_FOUND",
                    f"No such {obj[:-1].replace('_', ' ')}: '{rid}'",
                    stripe_code="resource_missing",
                    param="id",
                )
            return JSON(self._render(obj, found)[0])

        return handler

    def _searcher(self, obj: str):  # type: ignore[no-untyped-def]
        return lambda req: self.search_objects(obj, req)

    def list_objects(self, obj: str, req: Req) -> Response:
        params = _nested(req.query.multi_items())
        limit = _limit(params.get("limit"))
        frame = self._frame(obj)
        exprs: list[pl.Expr] = []
        if obj == "events":
            # Stripe keeps events for 30 days only.
            exprs.append(pl.col("created") >= self.estate.now - EVENT_RETENTION)
            types = params.get("types")
            if types:
                types = list(types.values()) if isinstance(types, dict) else types
                exprs.append(pl.col("type").is_in(types if isinstance(types, list) else [types]))
        exprs += _created_filter(params.get("created"))
        for name in _FILTERS[obj]:
            if name in params and name in frame.columns:
                exprs.append(pl.col(name) == str(params[name]))
        ordered = self._newest_first(obj, frame, exprs)
        name = f"{obj}.list"
        starting_after, ending_before = params.get("starting_after"), params.get("ending_before")
        cursor = starting_after or ending_before
        duplicate = None
        if cursor:
            found = ordered.get_column("id").index_of(cursor)
            if found is None:
                raise ApiError(
                    400,
                    "INVALID",
                    f"No such object: '{cursor}'",
                    stripe_code="resource_missing",
                    param="starting_after" if starting_after else "ending_before",
                )
            pos = int(found)
            if starting_after:
                if self.faults.fire(name, "change_between_pages"):
                    self._touch(obj, ordered.slice(pos + 1, 1))
                    ordered = self._newest_first(obj, self._frame(obj), exprs)
                page = ordered.slice(pos + 1, limit)
                has_more = pos + 1 + limit < ordered.height
                if self.faults.fire(name, "duplicate_page"):
                    duplicate = ordered.slice(pos, 1)
            else:
                start = max(0, pos - limit)
                page = ordered.slice(start, pos - start)
                has_more = start > 0
        else:
            page = ordered.head(limit)
            has_more = ordered.height > limit
        if duplicate is not None:
            page = pl.concat([duplicate, page])
        return JSON(
            {
                "object": "list",
                "data": self._render(obj, page),
                "has_more": has_more,
                "url": f"/v1/{obj}",
            }
        )

    def _newest_first(self, obj: str, frame: pl.DataFrame, exprs: list[pl.Expr]) -> pl.DataFrame:
        ordered = self.sorted.get(obj, frame, lambda f: f.sort(["created", "id"], descending=True))
        return ordered.filter(*exprs) if exprs else ordered

    def _touch(self, obj: str, rows: pl.DataFrame) -> None:
        if rows.height and obj != "events":
            with self.estate.lock:
                self.estate.update(VENDOR, obj, rows["id"][0], {})

    def search_objects(self, obj: str, req: Req) -> Response:
        text = req.query.get("query")
        if not text:
            raise ApiError(400, "INVALID", "Missing required param: query.", param="query")
        limit = _limit(req.query.get("limit"))
        frame = self._frame(obj)
        exprs = _search_exprs(text, frame)
        ordered = self._newest_first(obj, frame, exprs)
        start = 0
        page_token = req.query.get("page")
        if page_token:
            try:
                start = int(base64.urlsafe_b64decode(page_token.encode()).decode())
            except ValueError as exc:
                raise ApiError(400, "INVALID", "Invalid page token.", param="page") from exc
        page = ordered.slice(start, limit)
        has_more = start + limit < ordered.height
        next_page = (
            base64.urlsafe_b64encode(str(start + limit).encode()).decode() if has_more else None
        )
        return JSON(
            {
                "object": "search_result",
                "data": self._render(obj, page),
                "has_more": has_more,
                "next_page": next_page,
                "total_count": ordered.height,
                "url": f"/v1/{obj}/search",
            }
        )

    # --- writes (all POSTs honour Idempotency-Key) ------------------------------------------------

    def _idempotent(self, req: Req, action: Any) -> Response:
        """Stripe's replay: same key and parameters -> the first response again, marked replayed."""
        key = req.headers.get("idempotency-key")
        fingerprint = hashlib.sha256(
            req.method.encode() + req.path.encode() + b"?" + req.body
        ).hexdigest()
        with self._write_lock:
            if key:
                saved = self._idempotency.get(key)
                if saved is not None:
                    if saved.fingerprint != fingerprint:
                        raise ApiError(
                            400,
                            "IDEMPOTENCY",
                            "Keys for idempotent requests can only be used with the same parameters "
                            f"they were first used with. Try using a key other than '{key}' if you "
                            "meant to execute a different request.",
                            type="idempotency_error",
                        )
                    return Response(
                        saved.body,
                        status_code=saved.status,
                        media_type="application/json",
                        headers={"Idempotent-Replayed": "true", "Idempotency-Key": key},
                    )
            try:
                response = action(_nested(parse_qsl(req.body.decode(), keep_blank_values=True)))
            except ApiError as exc:
                response = self.error_response(exc)
            if key:
                self._idempotency[key] = _Saved(
                    fingerprint, response.status_code, bytes(response.body)
                )
                response.headers["Idempotency-Key"] = key
                response.headers["Original-Request"] = "req_" + fingerprint[:14]
            return response

    def _metadata(self, params: dict[str, Any]) -> dict[str, Any] | None:
        meta = params.get("metadata")
        if meta in (None, ""):
            return None
        if not isinstance(meta, dict):
            raise ApiError(400, "INVALID", "Invalid object", param="metadata")
        return {"netsuite_id": meta.get("netsuite_id")}

    def _one(self, obj: str, rid: str) -> pl.DataFrame:
        found = self._frame(obj).filter(pl.col("id") == rid)
        if found.height == 0:
            raise ApiError(
                404,
                "NOT_FOUND",
                f"No such {obj[:-1]}: '{rid}'",
                stripe_code="resource_missing",
                param="id",
            )
        return found

    def create_customer(self, req: Req) -> Response:
        def action(params: dict[str, Any]) -> Response:
            row: dict[str, Any] = {k: params[k] for k in ("name", "email") if k in params}
            if "currency" in params:
                row["currency"] = str(params["currency"]).lower()
            meta = self._metadata(params)
            if meta is not None:
                row["metadata"] = meta
            with self.estate.lock:
                (cid,) = self.estate.insert(VENDOR, "customers", [row])
            return JSON(self._render("customers", self._one("customers", cid))[0])

        return self._idempotent(req, action)

    def update_customer(self, req: Req) -> Response:
        def action(params: dict[str, Any]) -> Response:
            rid = req.path_params["id"]
            self._one("customers", rid)
            changes: dict[str, Any] = {k: params[k] for k in ("name", "email") if k in params}
            meta = self._metadata(params)
            if meta is not None:
                changes["metadata"] = meta
            with self.estate.lock:
                self.estate.update(VENDOR, "customers", rid, changes)
            return JSON(self._render("customers", self._one("customers", rid))[0])

        return self._idempotent(req, action)

    def create_invoice(self, req: Req) -> Response:
        def action(params: dict[str, Any]) -> Response:
            customer = params.get("customer")
            if not customer:
                raise ApiError(
                    400, "INVALID", "Missing required param: customer.", param="customer"
                )
            cust = self._one("customers", str(customer)).row(0, named=True)
            now = self.estate.now
            method = params.get("collection_method", "charge_automatically")
            due = None
            if method == "send_invoice":
                if "due_date" in params:
                    due = dt.datetime.fromtimestamp(int(params["due_date"]), dt.UTC)
                else:
                    due = now + dt.timedelta(days=int(params.get("days_until_due", 30)))
            row: dict[str, Any] = {
                "customer": customer,
                "status": "draft",
                "collection_method": method,
                "currency": str(params.get("currency") or cust.get("currency") or "usd").lower(),
                "amount_due": 0,
                "amount_paid": 0,
                "amount_remaining": 0,
                "total": 0,
                "due_date": due,
                "status_transitions": {
                    "finalized_at": None,
                    "marked_uncollectible_at": None,
                    "paid_at": None,
                    "voided_at": None,
                },
            }
            meta = self._metadata(params)
            if meta is not None:
                row["metadata"] = meta
            with self.estate.lock:
                (iid,) = self.estate.insert(VENDOR, "invoices", [row])
            return JSON(self._render("invoices", self._one("invoices", iid))[0])

        return self._idempotent(req, action)

    def update_invoice(self, req: Req) -> Response:
        def action(params: dict[str, Any]) -> Response:
            rid = req.path_params["id"]
            self._one("invoices", rid)
            changes: dict[str, Any] = {}
            meta = self._metadata(params)
            if meta is not None:
                changes["metadata"] = meta
            if "due_date" in params:
                changes["due_date"] = dt.datetime.fromtimestamp(int(params["due_date"]), dt.UTC)
            with self.estate.lock:
                self.estate.update(VENDOR, "invoices", rid, changes)
            return JSON(self._render("invoices", self._one("invoices", rid))[0])

        return self._idempotent(req, action)

    def create_invoice_item(self, req: Req) -> Response:
        """Adds `amount` to a draft invoice (`invoice` is required here: no pending items)."""

        def action(params: dict[str, Any]) -> Response:
            invoice = params.get("invoice")
            if not invoice:
                raise ApiError(
                    400, "INVALID", "This simulator needs param: invoice.", param="invoice"
                )
            try:
                amount = int(params.get("amount", ""))
            except ValueError as exc:
                raise ApiError(400, "INVALID", "Invalid integer: amount", param="amount") from exc
            row = self._one("invoices", str(invoice)).row(0, named=True)
            if row["status"] != "draft":
                raise ApiError(
                    400,
                    "INVALID",
                    "You can only add invoice items to draft invoices.",
                    param="invoice",
                )
            total = int(row["total"] or 0) + amount
            with self.estate.lock:
                self.estate.update(
                    VENDOR,
                    "invoices",
                    row["id"],
                    {
                        "total": total,
                        "amount_due": total,
                        "amount_remaining": total - int(row["amount_paid"] or 0),
                    },
                )
            return JSON(
                {
                    "id": "ii_" + hashlib.sha256(req.body).hexdigest()[:24],
                    "object": "invoiceitem",
                    "amount": amount,
                    "currency": row["currency"],
                    "customer": row["customer"],
                    "invoice": row["id"],
                    "description": params.get("description"),
                    "date": int(self.estate.now.timestamp()),
                    "livemode": False,
                    "metadata": {},
                }
            )

        return self._idempotent(req, action)

    def finalize_invoice(self, req: Req) -> Response:
        def action(params: dict[str, Any]) -> Response:
            row = self._one("invoices", req.path_params["id"]).row(0, named=True)
            if row["status"] != "draft":
                raise ApiError(
                    400,
                    "INVALID",
                    "This invoice is already finalized.",
                    stripe_code="invoice_not_editable",
                )
            transitions = dict(row.get("status_transitions") or {})
            transitions["finalized_at"] = self.estate.now
            number = row.get("number") or f"SBX-{row['id'][-8:].upper()}"
            with self.estate.lock:
                self.estate.update(
                    VENDOR,
                    "invoices",
                    row["id"],
                    {"status": "open", "status_transitions": transitions, "number": number},
                )
            return JSON(self._render("invoices", self._one("invoices", row["id"]))[0])

        return self._idempotent(req, action)


def _nested(pairs: Any) -> dict[str, Any]:
    """Stripe's bracket form encoding (`metadata[k]=v`, `created[gte]=1`, `types[]=a`) as dicts."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head, *(re.findall(r"([^\]]*)\]", rest) if rest else [])]
        node = out
        for i, part in enumerate(parts[:-1]):
            if parts[i + 1] == "" and i + 2 == len(parts):
                items = node.setdefault(part, [])
                if isinstance(items, list):
                    items.append(value)
                break
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        else:
            node[parts[-1]] = value
    return out


def _limit(raw: Any) -> int:
    if raw is None:
        return 10
    try:
        limit = int(raw)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "INVALID", "Invalid integer: limit", param="limit") from exc
    if not 1 <= limit <= 100:
        raise ApiError(
            400,
            "INVALID",
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            param="limit",
        )
    return limit


def _created_filter(raw: Any) -> list[pl.Expr]:
    if raw is None:
        return []
    col = pl.col("created")
    try:
        if not isinstance(raw, dict):
            return [col == dt.datetime.fromtimestamp(int(raw), dt.UTC)]
        ops = {"gt": col.__gt__, "gte": col.__ge__, "lt": col.__lt__, "lte": col.__le__}
        out = []
        for op, value in raw.items():
            if op not in ops:
                raise ApiError(
                    400, "INVALID", f"Received unknown parameter: created[{op}]", param="created"
                )
            out.append(ops[op](dt.datetime.fromtimestamp(int(value), dt.UTC)))
        return out
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "INVALID", "Invalid timestamp: created", param="created") from exc


_CLAUSE = re.compile(
    r"""\s*(?:(?P<meta>metadata\[['"](?P<mkey>[^'"]+)['"]\])|(?P<field>[a-z_]+))\s*"""
    r"""(?P<op>:|>=|<=|>|<)\s*(?:['"](?P<str>[^'"]*)['"]|(?P<num>-?\d+))\s*""",
)


def _search_exprs(text: str, frame: pl.DataFrame) -> list[pl.Expr]:
    """Stripe search query language: clauses joined by AND (OR is refused)."""
    exprs: list[pl.Expr] = []
    for clause in re.split(r"\s+AND\s+", text.strip()):
        m = _CLAUSE.fullmatch(clause)
        if m is None or " OR " in clause:
            raise ApiError(400, "INVALID", f"Invalid search query: {clause!r}", param="query")
        value: Any = m.group("str") if m.group("str") is not None else int(m.group("num"))
        if m.group("meta"):
            if m.group("mkey") != "netsuite_id":
                exprs.append(pl.lit(False))
                continue
            col = pl.col("metadata").struct.field("netsuite_id")
            value = str(value)
        else:
            name = m.group("field")
            if name not in frame.columns:
                raise ApiError(
                    400, "INVALID", f"Field '{name}' is not supported for search", param="query"
                )
            col = pl.col(name)
            if name == "created":
                value = dt.datetime.fromtimestamp(int(value), dt.UTC)
            elif frame.schema[name].is_integer():
                value = int(value)
            else:
                value = str(value)
        op = m.group("op")
        exprs.append(
            {
                ":": col == value,
                ">": col > value,
                "<": col < value,
                ">=": col >= value,
                "<=": col <= value,
            }[op]
        )
    return exprs
