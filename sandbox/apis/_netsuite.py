"""NetSuite REST simulator: OAuth 2 client-credentials (JWT assertion) and OAuth 1 TBA headers,
SuiteQL with limit/offset paging and the 100,000-result cap, the record API (GET, PATCH, PUT eid:
upsert, POST 204 + Location with X-NetSuite-Idempotency-Key) and NetSuite's error envelope."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs

import polars as pl
from starlette.responses import Response

from sandbox.apis._base import JSON, ApiError, Req, Simulator, TokenStore, _Endpoint, jwt_claims
from sandbox.apis._faults import FaultPlan
from sandbox.apis._query import (
    QueryError,
    filter_frame,
    oracle_to_strftime,
    parse_suiteql,
    resolve_column,
    sort_frame,
)
from sandbox.apis._render import coerce_value, netsuite_items

VENDOR = "netsuite"
MAX_LIMIT = 1000
RESULT_CAP = 100_000

_TITLES = {
    400: ("Bad Request", "sec10.4.1"),
    401: ("Unauthorized", "sec10.4.2"),
    403: ("Forbidden", "sec10.4.4"),
    404: ("Not Found", "sec10.4.5"),
    409: ("Conflict", "sec10.4.10"),
    429: ("Too Many Requests", "sec10.4.1"),
    500: ("Internal Server Error", "sec10.5.1"),
    502: ("Bad Gateway", "sec10.5.3"),
    503: ("Service Unavailable", "sec10.5.4"),
    504: ("Gateway Timeout", "sec10.5.5"),
}

# Record types of the record API -> (table, transaction type filter).
_RECORD_TABLES: dict[str, tuple[str, str | None]] = {
    "customer": ("customer", None),
    "job": ("job", None),
    "invoice": ("transaction", "CustInvc"),
    "customerpayment": ("transaction", "CustPymt"),
    "currency": ("currency", None),
    "subsidiary": ("subsidiary", None),
    "term": ("term", None),
}
# Record-API field names (camelCase) that differ from the SuiteQL column beyond letter case.
_FIELD_NAMES: dict[str, dict[str, str]] = {
    "invoice": {"total": "foreigntotal", "amountRemaining": "foreignamountunpaid"},
    "customerpayment": {
        "customer": "entity",
        "payment": "foreigntotal",
        "applied": "foreignpaymentamountused",
        "unapplied": "foreignpaymentamountunused",
    },
}
_CAMEL = {
    "entityid": "entityId",
    "companyname": "companyName",
    "externalid": "externalId",
    "isinactive": "isInactive",
    "datecreated": "dateCreated",
    "lastmodifieddate": "lastModifiedDate",
    "startdate": "startDate",
    "projectedenddate": "projectedEndDate",
    "entitystatus": "entityStatus",
    "tranid": "tranId",
    "trandate": "tranDate",
    "duedate": "dueDate",
    "exchangerate": "exchangeRate",
    "createddate": "createdDate",
    "isbasecurrency": "isBaseCurrency",
    "daysuntilnetdue": "daysUntilNetDue",
}
# Columns rendered as references {"id", "links"} and the record type they point to.
_REFERENCES = {
    "entity": "customer",
    "job": "job",
    "parent": "customer",
    "subsidiary": "subsidiary",
    "currency": "currency",
    "terms": "term",
}
_READ_ONLY = {"id", "lastmodifieddate", "datecreated", "createddate", "type"}


@dataclass(frozen=True)
class NetSuiteCredentials:
    account: str = "1234567_SB1"
    client_id: str = "sandbox-ns-client"  # OAuth 2 (the JWT assertion's `iss`)
    consumer_key: str = "sandbox-ns-consumer-key"  # OAuth 1 TBA
    consumer_secret: str = "sandbox-ns-consumer-secret"
    token_id: str = "sandbox-ns-token-id"
    token_secret: str = "sandbox-ns-token-secret"


class NetSuiteSimulator(Simulator):
    vendor: ClassVar[str] = VENDOR

    def __init__(
        self,
        estate: Any,
        faults: FaultPlan | None = None,
        credentials: NetSuiteCredentials | None = None,
        token_ttl_seconds: float = 3600.0,
    ):
        self.credentials = credentials or NetSuiteCredentials()
        self.tokens = TokenStore(token_ttl_seconds)
        self._idempotency: dict[str, str] = {}  # key -> Location of the record the request made
        self._write_lock = threading.Lock()
        super().__init__(estate, faults)

    def endpoints(self) -> list[_Endpoint]:
        rest = "/services/rest"
        return [
            _Endpoint("token", f"{rest}/auth/oauth2/v1/token", ["POST"], self.token, auth=False),
            _Endpoint("suiteql", f"{rest}/query/v1/suiteql", ["POST"], self.suiteql),
            _Endpoint("record.get", f"{rest}/record/v1/{{rtype}}/{{rid}}", ["GET"], self.get),
            _Endpoint(
                "record.put", f"{rest}/record/v1/{{rtype}}/{{rid}}", ["PUT"], self.put, write=True
            ),
            _Endpoint(
                "record.patch",
                f"{rest}/record/v1/{{rtype}}/{{rid}}",
                ["PATCH"],
                self.patch,
                write=True,
            ),
            _Endpoint(
                "record.post", f"{rest}/record/v1/{{rtype}}", ["POST"], self.post, write=True
            ),
        ]

    def error_response(self, error: ApiError) -> Response:
        title, section = _TITLES.get(error.status, ("Error", "sec10.4.1"))
        code = {
            "UNEXPECTED_ERROR": "UNEXPECTED_ERROR",
            "RATE_LIMITED": "CONCURRENCY_LIMIT_EXCEEDED",
        }.get(error.code, error.code)
        body = {
            "type": f"https://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html#{section}",
            "title": error.extra.get("title", title),
            "status": error.status,
            "o:errorDetails": [{"detail": error.message, "o:errorCode": code}],
        }
        return JSON(body, status_code=error.status)

    def rate_limit_error(self) -> ApiError:
        return ApiError(
            429,
            "CONCURRENCY_LIMIT_EXCEEDED",
            "Concurrent request limit exceeded. Request blocked.",
        )

    def revoke_tokens(self) -> None:
        self.tokens.revoke_all()

    def authenticate(self, req: Req) -> None:
        header = req.headers.get("authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() == "bearer" and self.tokens.valid(rest.strip()):
            return
        if scheme == "OAuth":
            # TBA: the signature is not verified (documented); key, token and realm must match.
            params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
            if (
                params.get("oauth_consumer_key") == self.credentials.consumer_key
                and params.get("oauth_token") == self.credentials.token_id
                and params.get("realm", self.credentials.account) == self.credentials.account
                and params.get("oauth_signature")
            ):
                return
        raise ApiError(
            401,
            "INVALID_LOGIN",
            "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI "
            "at Setup > Users/Roles > User Management > View Login Audit Trail.",
        )

    def token(self, req: Req) -> Response:
        form = {k: v[-1] for k, v in parse_qs(req.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return JSON({"error": "unsupported_grant_type"}, status_code=400)
        if (
            form.get("client_assertion_type")
            != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return JSON({"error": "invalid_request"}, status_code=400)
        # The JWT signature is not checked (no certificates are registered in the sandbox).
        if jwt_claims(form.get("client_assertion", "")).get("iss") != self.credentials.client_id:
            return JSON({"error": "invalid_client"}, status_code=400)
        return JSON(
            {
                "access_token": self.tokens.issue(),
                "token_type": "bearer",
                "expires_in": str(int(self.tokens.ttl_seconds)),
            }
        )

    # --- SuiteQL ----------------------------------------------------------------------------------

    def _table(self, name: str) -> str:
        for obj in self.estate.objects(VENDOR):
            if obj.lower() == name.lower():
                return obj
        raise ApiError(
            400,
            "INVALID_PARAMETER",
            f"Invalid search query. Detailed unprocessed description follows. Search error "
            f"occurred: Record '{name}' was not found.",
        )

    def suiteql(self, req: Req) -> Response:
        try:
            limit = int(req.query.get("limit", MAX_LIMIT))
            offset = int(req.query.get("offset", 0))
        except ValueError as exc:
            raise ApiError(400, "INVALID_PARAMETER", "limit and offset must be integers") from exc
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(
                400, "INVALID_PARAMETER", f"Invalid 'limit' value; it must be 1..{MAX_LIMIT}."
            )
        if offset < 0 or offset % limit:
            raise ApiError(
                400,
                "INVALID_PARAMETER",
                "Invalid 'offset' value; it must be a multiple of 'limit'.",
            )
        if offset >= RESULT_CAP:
            raise ApiError(
                400,
                "INVALID_PARAMETER",
                f"SuiteQL returns at most {RESULT_CAP} results; narrow the query.",
            )
        body = req.json()
        text = body.get("q") if isinstance(body, dict) else None
        if not text:
            raise ApiError(400, "INVALID_PARAMETER", 'The request body must be {"q": "<SuiteQL>"}.')
        try:
            query = parse_suiteql(text)
        except QueryError as exc:
            raise ApiError(400, "INVALID_PARAMETER", f"Invalid search query: {exc}") from exc
        table = self._table(query.table)

        def run() -> pl.DataFrame:
            with self.estate.lock:
                frame = self.estate.frame(VENDOR, table)
            key = (table, tuple((c.lower(), d) for c, d in query.order_by))
            ordered = self.sorted.get(key, frame, lambda f: sort_frame(f, query, numeric_ids=True))
            return filter_frame(ordered, query)

        try:
            result = run()
            columns = result.columns
            if query.star:
                select = [pl.col(c) for c in columns]
                to_char: dict[str, str] = {}
            else:
                select, to_char = [], {}
                for item in query.items:
                    col = resolve_column(item.column, columns)
                    alias = item.alias.lower()
                    select.append(pl.col(col).alias(alias))
                    if item.to_char:
                        to_char[alias] = oracle_to_strftime(item.to_char)
        except QueryError as exc:
            raise ApiError(
                400,
                "INVALID_PARAMETER",
                f"Invalid search query. Detailed unprocessed description follows. Search error "
                f"occurred: {exc} for record '{table}'.",
            ) from exc
        if (
            offset > 0
            and result.height > offset - limit
            and self.faults.fire("suiteql", "change_between_pages")
        ):
            # Offset paging re-runs the query: touching a record already served moves it to the end.
            rid = result["id"][offset - limit] if "id" in columns else None
            if rid is not None:
                with self.estate.lock:
                    self.estate.update(VENDOR, table, rid, {})
                result = run()
        total = min(result.height, RESULT_CAP)
        page = result.slice(offset, min(limit, total - offset) if total > offset else 0)
        if offset > 0 and total >= offset and self.faults.fire("suiteql", "duplicate_page"):
            page = pl.concat([result.slice(offset - 1, 1), page])
        items = netsuite_items(page.select(select), to_char)
        has_more = offset + limit < total
        base = f"{req.base_url}/services/rest/query/v1/suiteql"
        links = []
        if offset > 0:
            links.append(
                {"rel": "previous", "href": f"{base}?limit={limit}&offset={max(0, offset - limit)}"}
            )
        links.append({"rel": "first", "href": f"{base}?limit={limit}&offset=0"})
        if has_more:
            links.append({"rel": "next", "href": f"{base}?limit={limit}&offset={offset + limit}"})
        last = max(0, (total - 1) // limit * limit)
        links.append({"rel": "last", "href": f"{base}?limit={limit}&offset={last}"})
        links.append({"rel": "self", "href": f"{base}?limit={limit}&offset={offset}"})
        return JSON(
            {
                "links": links,
                "count": len(items),
                "hasMore": has_more,
                "offset": offset,
                "totalResults": total,
                "items": items,
            }
        )

    # --- record API -------------------------------------------------------------------------------

    def _record_table(self, rtype: str) -> tuple[str, str | None]:
        found = _RECORD_TABLES.get(rtype.lower())
        if found is None:
            raise ApiError(404, "NONEXISTENT_ID", f"Record type '{rtype}' does not exist.")
        return found

    def _lookup(self, rtype: str, rid: str) -> pl.DataFrame:
        table, type_filter = self._record_table(rtype)
        with self.estate.lock:
            frame = self.estate.frame(VENDOR, table)
        if type_filter is not None:
            frame = frame.filter(pl.col("type") == type_filter)
        if rid.startswith("eid:"):
            return frame.filter(pl.col("externalid") == rid[4:])
        return frame.filter(pl.col("id") == rid)

    def _render_record(self, rtype: str, row: pl.DataFrame, base: str) -> dict[str, Any]:
        names = {v: k for k, v in _FIELD_NAMES.get(rtype, {}).items()}
        flat = netsuite_items(
            row,
            to_char={
                c: "%Y-%m-%dT%H:%M:%SZ" for c, d in row.schema.items() if isinstance(d, pl.Datetime)
            },
        )[0]
        flat.pop("links", None)
        # Record JSON keeps dates ISO (not the SuiteQL user format) and numbers as numbers.
        typed = row.row(0, named=True)
        out: dict[str, Any] = {
            "links": [
                {"rel": "self", "href": f"{base}/services/rest/record/v1/{rtype}/{typed['id']}"}
            ]
        }
        for column, text in flat.items():
            key = names.get(column) or _CAMEL.get(column, column)
            value: Any = text
            dtype = row.schema[column]
            if isinstance(dtype, pl.Date):
                value = typed[column].isoformat()
            elif isinstance(dtype, pl.Decimal) or dtype.is_numeric():
                value = float(typed[column]) if isinstance(dtype, pl.Decimal) else typed[column]
            elif isinstance(dtype, pl.Boolean):
                value = typed[column]
            if column in _REFERENCES and column != "type":
                target = _REFERENCES[column]
                value = {
                    "id": text,
                    "links": [
                        {"rel": "self", "href": f"{base}/services/rest/record/v1/{target}/{text}"}
                    ],
                }
            out[key] = value
        return out

    def get(self, req: Req) -> Response:
        rtype, rid = req.path_params["rtype"], req.path_params["rid"]
        found = self._lookup(rtype, rid)
        if found.height == 0:
            raise ApiError(
                404, "NONEXISTENT_ID", f"The record instance does not exist. Invalid id {rid}."
            )
        return JSON(self._render_record(rtype.lower(), found.head(1), req.base_url))

    def _values(self, rtype: str, body: Any, table: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "INVALID_CONTENT", "The request body must be a JSON object.")
        with self.estate.lock:
            schema = self.estate.frame(VENDOR, table).schema
        names = _FIELD_NAMES.get(rtype, {})
        values: dict[str, Any] = {}
        for key, raw in body.items():
            if key == "links":
                continue
            column = names.get(key, key.lower())
            if column not in schema or column in _READ_ONLY:
                raise ApiError(
                    400,
                    "INVALID_PARAMETER",
                    f"Invalid field name '{key}' for record type '{rtype}'.",
                )
            if isinstance(
                raw, dict
            ):  # a reference {"id": ...} (or {"externalId": ...} unsupported)
                raw = raw.get("id")
            try:
                values[column] = coerce_value(raw, schema[column])
            except (ValueError, ArithmeticError) as exc:
                raise ApiError(
                    400, "INVALID_PARAMETER", f"Invalid value for '{key}': {exc}"
                ) from exc
        return values

    def _location(self, req: Req, rtype: str, rid: str) -> str:
        return f"{req.base_url}/services/rest/record/v1/{rtype}/{rid}"

    def put(self, req: Req) -> Response:
        rtype, rid = req.path_params["rtype"].lower(), req.path_params["rid"]
        if not rid.startswith("eid:"):
            raise ApiError(
                400,
                "INVALID_PARAMETER",
                "PUT upserts by external id: use /record/v1/<type>/eid:<externalId>.",
            )
        table, type_filter = self._record_table(rtype)
        values = self._values(rtype, req.json(), table)
        with self.estate.lock:
            found = self._lookup(rtype, rid)
            if found.height:
                record_id = found["id"][0]
                self.estate.update(VENDOR, table, record_id, values)
            else:
                values["externalid"] = rid[4:]
                if type_filter:
                    values["type"] = type_filter
                (record_id,) = self.estate.insert(VENDOR, table, [values])
        return Response(
            status_code=204, headers={"Location": self._location(req, rtype, record_id)}
        )

    def patch(self, req: Req) -> Response:
        rtype, rid = req.path_params["rtype"].lower(), req.path_params["rid"]
        table, _ = self._record_table(rtype)
        values = self._values(rtype, req.json(), table)
        with self.estate.lock:
            found = self._lookup(rtype, rid)
            if found.height == 0:
                raise ApiError(
                    404, "NONEXISTENT_ID", f"The record instance does not exist. Invalid id {rid}."
                )
            self.estate.update(VENDOR, table, found["id"][0], values)
        return Response(status_code=204)

    def post(self, req: Req) -> Response:
        rtype = req.path_params["rtype"].lower()
        table, type_filter = self._record_table(rtype)
        values = self._values(rtype, req.json(), table)
        key = req.headers.get("x-netsuite-idempotency-key")
        with self._write_lock:
            if key and key in self._idempotency:
                raise ApiError(
                    400,
                    "IDEMPOTENCY_ERROR",
                    "A request with the same idempotency key is already submitted. See the "
                    '"Location" header for a link to the previously submitted request.',
                    headers={"Location": self._idempotency[key]},
                    title="Conflict",
                )
            if type_filter:
                values["type"] = type_filter
            with self.estate.lock:
                (record_id,) = self.estate.insert(VENDOR, table, [values])
            location = self._location(req, rtype, record_id)
            if key:
                self._idempotency[key] = location
        return Response(status_code=204, headers={"Location": location})
