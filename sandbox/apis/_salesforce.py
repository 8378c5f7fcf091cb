"""Salesforce REST simulator: OAuth token, SOQL query/queryAll with query locators, sobject
reads, external-id upserts, the daily API budget in `Sforce-Limit-Info`, errors as JSON arrays."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs

import orjson
import polars as pl
from starlette.responses import Response

from sandbox.apis._base import (
    JSON,
    ApiError,
    Req,
    Simulator,
    TokenStore,
    _Endpoint,
    json_bytes,
    jwt_claims,
)
from sandbox.apis._faults import FaultPlan
from sandbox.apis._query import (
    Query,
    QueryError,
    filter_frame,
    parse_soql,
    resolve_column,
    sort_frame,
)
from sandbox.apis._render import coerce_value, salesforce_records_json, salesforce_rows

VENDOR = "salesforce"
API_VERSION = "59.0"
MAX_BATCH = 2000
MIN_BATCH = 200
LOCATOR_IDLE_SECONDS = 15 * 60


@dataclass(frozen=True)
class SalesforceCredentials:
    client_id: str = "sandbox-sf-client"
    client_secret: str = "sandbox-sf-secret"


@dataclass
class _Locator:
    sobject: str
    rows: pl.DataFrame  # the whole result, snapshotted when the query ran (as Salesforce does)
    batch: int
    version: str
    last_used: float


_ERROR_CODES = {
    "UNEXPECTED_ERROR": "UNKNOWN_EXCEPTION",
    "SERVICE_UNAVAILABLE": "SERVER_UNAVAILABLE",
}


class SalesforceSimulator(Simulator):
    vendor: ClassVar[str] = VENDOR

    def __init__(
        self,
        estate: Any,
        faults: FaultPlan | None = None,
        credentials: SalesforceCredentials | None = None,
        token_ttl_seconds: float = 7200.0,
        daily_api_limit: int = 100_000,
        max_locators: int = 64,
    ):
        self.credentials = credentials or SalesforceCredentials()
        self.tokens = TokenStore(token_ttl_seconds, prefix="00Dsandbox!")
        self.daily_api_limit = daily_api_limit
        self._usage = 0
        self._usage_day: dt.date | None = None
        self._usage_lock = threading.Lock()
        self._locators: OrderedDict[str, _Locator] = OrderedDict()
        self._locators_lock = threading.Lock()
        self._max_locators = max_locators
        self._locator_seq = itertools.count(1)
        super().__init__(estate, faults)

    # --- contract with the base ----------------------------------------------------------------

    def endpoints(self) -> list[_Endpoint]:
        data = "/services/data/{version}"
        eps = [_Endpoint("token", "/services/oauth2/token", ["POST"], self.token, auth=False)]
        for kind in ("query", "queryAll"):
            for suffix in ("/", ""):
                eps.append(_Endpoint("query", f"{data}/{kind}{suffix}", ["GET"], self.query))
            eps.append(
                _Endpoint("query_more", f"{data}/{kind}/{{locator}}", ["GET"], self.query_more)
            )
        eps += [
            _Endpoint("limits", f"{data}/limits/", ["GET"], self.limits),
            _Endpoint(
                "sobject_create", f"{data}/sobjects/{{sobject}}/", ["POST"], self.create, write=True
            ),
            _Endpoint(
                "sobject_create", f"{data}/sobjects/{{sobject}}", ["POST"], self.create, write=True
            ),
            _Endpoint("sobject_get", f"{data}/sobjects/{{sobject}}/{{id}}", ["GET"], self.get),
            _Endpoint(
                "sobject_update",
                f"{data}/sobjects/{{sobject}}/{{id}}",
                ["PATCH"],
                self.update,
                write=True,
            ),
            _Endpoint(
                "sobject_get",
                f"{data}/sobjects/{{sobject}}/{{field}}/{{value}}",
                ["GET"],
                self.get_by_external_id,
            ),
            _Endpoint(
                "upsert",
                f"{data}/sobjects/{{sobject}}/{{field}}/{{value}}",
                ["PATCH"],
                self.upsert,
                write=True,
            ),
        ]
        return eps

    def error_response(self, error: ApiError) -> Response:
        code = _ERROR_CODES.get(error.code, error.code)
        body = [
            {"message": error.message, "errorCode": code, "fields": error.extra.get("fields", [])}
        ]
        return JSON(body, status_code=error.status)

    def rate_limit_error(self) -> ApiError:
        return ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")

    def revoke_tokens(self) -> None:
        self.tokens.revoke_all()

    def authenticate(self, req: Req) -> None:
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not self.tokens.valid(token.strip()):
            raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        with self._usage_lock:
            day = self.estate.now.date()
            if day != self._usage_day:  # the budget is per (simulated) day
                self._usage_day, self._usage = day, 0
            if self._usage >= self.daily_api_limit:
                raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self._usage += 1

    def decorate(self, req: Req | None, response: Response) -> None:
        response.headers["Sforce-Limit-Info"] = f"api-usage={self._usage}/{self.daily_api_limit}"

    def set_api_usage(self, used: int) -> None:
        """Move the day's usage counter (tests and demos of budget exhaustion)."""
        with self._usage_lock:
            self._usage_day = self.estate.now.date()
            self._usage = used

    # --- auth -----------------------------------------------------------------------------------

    def token(self, req: Req) -> Response:
        form = {k: v[-1] for k, v in parse_qs(req.body.decode()).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = req.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            decoded = base64.b64decode(basic[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
        grant = form.get("grant_type")
        ok = False
        if grant in ("client_credentials", "password"):
            ok = (client_id, client_secret) == (
                self.credentials.client_id,
                self.credentials.client_secret,
            )
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            # The assertion's signature is not checked: the sandbox has no certificates on file.
            ok = jwt_claims(form.get("assertion", "")).get("iss") == self.credentials.client_id
        else:
            return JSON(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
                status_code=400,
            )
        if not ok:
            return JSON(
                {"error": "invalid_client", "error_description": "invalid client credentials"},
                status_code=400,
            )
        issued = str(int(time.time() * 1000))
        return JSON(
            {
                "access_token": self.tokens.issue(),
                "instance_url": req.base_url,
                "id": f"{req.base_url}/id/00Dsandbox/005sandbox",
                "token_type": "Bearer",
                "issued_at": issued,
                "signature": base64.b64encode(issued.encode()).decode(),
                "scope": "api",
            }
        )

    # --- reads ------------------------------------------------------------------------------------

    def _sobjects(self) -> list[str]:
        return list(self.estate.objects(VENDOR))

    def _sobject(self, name: str) -> str:
        for obj in self._sobjects():
            if obj.lower() == name.lower():
                return obj
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    def query(self, req: Req) -> Response:
        text = req.query.get("q")
        if not text:
            raise ApiError(400, "MALFORMED_QUERY", "A query string parameter 'q' is required")
        try:
            parsed = parse_soql(text)
        except QueryError as exc:
            raise ApiError(400, exc.code, str(exc)) from exc
        sobject = next((o for o in self._sobjects() if o.lower() == parsed.table.lower()), None)
        if sobject is None:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{parsed.table}' is not supported.")
        include_deleted = "/queryAll" in req.path
        with self.estate.lock:
            frame = self.estate.frame(VENDOR, sobject)
        try:
            rows = self._run(frame, parsed, sobject, include_deleted)
        except QueryError as exc:
            raise ApiError(400, exc.code, f"{exc} on entity '{sobject}'") from exc
        batch = _batch_size(req.headers.get("sforce-query-options", ""))
        version = req.path_params["version"]
        locator_id = None
        if rows.height > batch:
            locator_id = f"01gSB{next(self._locator_seq):013d}"
            with self._locators_lock:
                self._locators[locator_id] = _Locator(
                    sobject, rows, batch, version, time.monotonic()
                )
                while len(self._locators) > self._max_locators:
                    self._locators.popitem(last=False)
        return self._page(sobject, rows, 0, batch, version, locator_id, req, previous_last=None)

    def query_more(self, req: Req) -> Response:
        locator_id, _, offset_text = req.path_params["locator"].rpartition("-")
        with self._locators_lock:
            locator = self._locators.get(locator_id)
            # Salesforce drops a query cursor after 15 minutes without a fetch.
            if locator is not None and time.monotonic() - locator.last_used > LOCATOR_IDLE_SECONDS:
                del self._locators[locator_id]
                locator = None
            if locator is None or not offset_text.isdigit():
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            locator.last_used = time.monotonic()
            self._locators.move_to_end(locator_id)
        offset = int(offset_text)
        previous_last = locator.rows.row(offset - 1, named=True) if offset > 0 else None
        return self._page(
            locator.sobject,
            locator.rows,
            offset,
            locator.batch,
            locator.version,
            locator_id,
            req,
            previous_last=previous_last,
        )

    def _run(
        self, frame: pl.DataFrame, q: Query, sobject: str, include_deleted: bool
    ) -> pl.DataFrame:
        key = (sobject, tuple((c.lower(), d) for c, d in q.order_by))
        frame = filter_frame(self.sorted.get(key, frame, lambda f: sort_frame(f, q)), q)
        if not include_deleted and "IsDeleted" in frame.columns:
            frame = frame.filter(~pl.col("IsDeleted").fill_null(False))
        if q.limit is not None:
            frame = frame.head(q.limit)
        columns = frame.columns
        if q.star:
            raise QueryError("SELECT * is not SOQL; name the fields or use FIELDS(ALL)")
        selected = []
        for item in q.items:
            name = resolve_column(item.column, columns)
            if name not in selected:
                selected.append(name)
        if "Id" not in selected and "Id" in columns:
            # Kept for the `attributes.url` of each record and dropped when rendering.
            return frame.select([*selected, pl.col("Id").alias("__id")])
        return frame.select(selected)

    def _page(
        self,
        sobject: str,
        rows: pl.DataFrame,
        offset: int,
        batch: int,
        version: str,
        locator_id: str | None,
        req: Req,
        previous_last: dict[str, Any] | None,
    ) -> Response:
        page = rows.slice(offset, batch)
        if offset > 0 and page.height and self.faults.fire("query_more", "change_between_pages"):
            page = self._touch_first(sobject, page)
        if previous_last is not None and self.faults.fire("query_more", "duplicate_page"):
            page = pl.concat([pl.DataFrame([previous_last], schema=rows.schema), page])
        end = offset + batch
        done = end >= rows.height
        head: dict[str, Any] = {"totalSize": rows.height, "done": done}
        if not done:
            kind = "queryAll" if "/queryAll" in req.path else "query"
            head["nextRecordsUrl"] = f"/services/data/{version}/{kind}/{locator_id}-{end}"
        # The records are serialised by polars and spliced into the envelope: at 2,000 records a
        # page this halves the cost of building Python dicts for orjson.
        records = salesforce_records_json(page, sobject, f"v{version.lstrip('v')}")
        return JSON(json_bytes(head)[:-1] + b',"records":' + records + b"}")

    def _touch_first(self, sobject: str, page: pl.DataFrame) -> pl.DataFrame:
        """Modify the first record of the page in the estate and serve its new values."""
        id_col = "__id" if "__id" in page.columns else "Id"
        rid = page[id_col][0]
        with self.estate.lock:
            self.estate.update(VENDOR, sobject, rid, {})
            live = self.estate.frame(VENDOR, sobject).filter(pl.col("Id") == rid)
        if live.height == 0:
            return page
        fresh = live.select(
            [pl.col(c if c != "__id" else "Id").alias(c) for c in page.columns]
        ).head(1)
        return pl.concat([fresh.cast(page.schema), page.slice(1)])

    def limits(self, req: Req) -> Response:
        return JSON(
            {
                "DailyApiRequests": {
                    "Max": self.daily_api_limit,
                    "Remaining": max(0, self.daily_api_limit - self._usage),
                }
            }
        )

    def _record(self, sobject: str, row: dict[str, Any], version: str) -> dict[str, Any]:
        rendered = salesforce_rows(pl.DataFrame([row]))[0] if row else {}
        return {
            "attributes": {
                "type": sobject,
                "url": f"/services/data/{version}/sobjects/{sobject}/{row.get('Id')}",
            },
            **rendered,
        }

    def _find(self, sobject: str, column: str, value: str) -> pl.DataFrame:
        with self.estate.lock:
            frame = self.estate.frame(VENDOR, sobject)
        return frame.filter(pl.col(column) == value)

    def get(self, req: Req) -> Response:
        sobject = self._sobject(req.path_params["sobject"])
        found = self._find(sobject, "Id", req.path_params["id"])
        if found.height == 0:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        found = _select_fields(found, req.query.get("fields"))
        return JSON(self._record(sobject, found.row(0, named=True), req.path_params["version"]))

    def get_by_external_id(self, req: Req) -> Response:
        sobject = self._sobject(req.path_params["sobject"])
        frame_cols = self._columns(sobject)
        field = _field(req.path_params["field"], frame_cols)
        found = self._find(sobject, field, req.path_params["value"])
        if found.height == 0:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if found.height > 1:
            return self._multiple(sobject, found, req.path_params["version"])
        return JSON(self._record(sobject, found.row(0, named=True), req.path_params["version"]))

    def _columns(self, sobject: str) -> dict[str, pl.DataType]:
        with self.estate.lock:
            return dict(self.estate.frame(VENDOR, sobject).schema)

    # --- writes ---------------------------------------------------------------------------------

    def _values(self, sobject: str, body: Any, forbidden: set[str]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        schema = self._columns(sobject)
        lowered = {c.lower(): c for c in schema}
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key == "attributes":
                continue
            column = lowered.get(key.lower())
            if column is None:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{key}' on sobject of type {sobject}",
                    fields=[key],
                )
            if column in forbidden:
                raise ApiError(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {column}.",
                    fields=[column],
                )
            try:
                values[column] = coerce_value(value, schema[column])
            except (ValueError, ArithmeticError) as exc:
                raise ApiError(
                    400, "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{column}: {exc}", fields=[column]
                ) from exc
        return values

    def create(self, req: Req) -> Response:
        sobject = self._sobject(req.path_params["sobject"])
        values = self._values(
            sobject, req.json(), {"Id", "SystemModstamp", "LastModifiedDate", "CreatedDate"}
        )
        with self.estate.lock:
            (new_id,) = self.estate.insert(VENDOR, sobject, [values])
        return JSON({"id": new_id, "success": True, "errors": []}, status_code=201)

    def update(self, req: Req) -> Response:
        sobject = self._sobject(req.path_params["sobject"])
        values = self._values(
            sobject, req.json(), {"Id", "SystemModstamp", "LastModifiedDate", "CreatedDate"}
        )
        with self.estate.lock:
            if self._find(sobject, "Id", req.path_params["id"]).height == 0:
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            self.estate.update(VENDOR, sobject, req.path_params["id"], values)
        return Response(status_code=204)

    def upsert(self, req: Req) -> Response:
        sobject = self._sobject(req.path_params["sobject"])
        schema = self._columns(sobject)
        field = _field(req.path_params["field"], schema)
        key = req.path_params["value"]
        values = self._values(
            sobject, req.json(), {"Id", field, "SystemModstamp", "LastModifiedDate", "CreatedDate"}
        )
        with self.estate.lock:
            found = self._find(sobject, field, key)
            if found.height > 1:
                return self._multiple(sobject, found, req.path_params["version"])
            if found.height == 1:
                record_id = found["Id"][0]
                self.estate.update(VENDOR, sobject, record_id, values)
                body = {"id": record_id, "success": True, "errors": [], "created": False}
                return JSON(body, status_code=200)
            if req.query.get("updateOnly", "").lower() == "true":
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            (record_id,) = self.estate.insert(VENDOR, sobject, [{field: key, **values}])
        return JSON(
            {"id": record_id, "success": True, "errors": [], "created": True}, status_code=201
        )

    def _multiple(self, sobject: str, found: pl.DataFrame, version: str) -> Response:
        urls = [f"/services/data/{version}/sobjects/{sobject}/{rid}" for rid in found["Id"]]
        return Response(orjson.dumps(urls), status_code=300, media_type="application/json")


def _field(name: str, columns: Any) -> str:
    for column in columns:
        if column.lower() == name.lower():
            return column
    raise ApiError(
        404, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: " + name
    )


def _select_fields(frame: pl.DataFrame, fields: str | None) -> pl.DataFrame:
    if not fields:
        return frame
    try:
        wanted = [resolve_column(f.strip(), frame.columns) for f in fields.split(",") if f.strip()]
    except QueryError as exc:
        raise ApiError(400, "INVALID_FIELD", str(exc)) from exc
    if "Id" not in wanted:
        wanted.insert(0, "Id")
    return frame.select(wanted)


def _batch_size(header: str) -> int:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "batchsize" and value.strip().isdigit():
            return max(MIN_BATCH, min(MAX_BATCH, int(value)))
    return MAX_BATCH
