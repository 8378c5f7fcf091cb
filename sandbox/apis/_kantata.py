"""Kantata OX (Mavenlink) API v1 simulator: bearer token, keyed-object (Brainstem) envelopes with
page/per_page paging, updated_after/order/include/external_reference filters, workspace creation
and external-reference create_or_update (the PSA's idempotency mechanism)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from starlette.responses import Response

from sandbox.apis._base import JSON, ApiError, Req, Simulator, TokenStore, _Endpoint
from sandbox.apis._faults import FaultPlan
from sandbox.apis._render import coerce_value, kantata_rows, parse_datetime

VENDOR = "kantata"
OBJECTS = ("workspaces", "time_entries", "stories", "invoices", "external_references")
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 20

# Query parameters that are not column filters.
_RESERVED = frozenset(
    {
        "page",
        "per_page",
        "order",
        "include",
        "only",
        "updated_after",
        "updated_before",
        "created_after",
        "created_before",
    }
)
_SUBJECT_TYPE = {"workspaces": "Workspace", "invoices": "Invoice", "stories": "Story"}
_SINGULAR = {
    "workspaces": "workspace",
    "time_entries": "time_entry",
    "stories": "story",
    "invoices": "invoice",
    "external_references": "external_reference",
}
_PLURAL = {v: k for k, v in _SINGULAR.items()}


@dataclass(frozen=True)
class KantataCredentials:
    access_token: str = "sandbox-kantata-token"
    client_id: str = "sandbox-kantata-client"
    client_secret: str = "sandbox-kantata-secret"


class KantataSimulator(Simulator):
    vendor: ClassVar[str] = VENDOR

    def __init__(
        self,
        estate: Any,
        faults: FaultPlan | None = None,
        credentials: KantataCredentials | None = None,
        token_ttl_seconds: float = 7200.0,
    ):
        self.credentials = credentials or KantataCredentials()
        self.tokens = TokenStore(token_ttl_seconds)
        super().__init__(estate, faults)

    def endpoints(self) -> list[_Endpoint]:
        eps = [_Endpoint("token", "/oauth/token", ["POST"], self.token, auth=False)]
        for suffix in ("", ".json"):
            eps += [
                _Endpoint(
                    "external_references.create_or_update",
                    f"/api/v1/external_references/create_or_update{suffix}",
                    ["POST"],
                    self.create_or_update_reference,
                    write=True,
                ),
                _Endpoint(
                    "workspaces.create",
                    f"/api/v1/workspaces{suffix}",
                    ["POST"],
                    self.create_workspace,
                    write=True,
                ),
            ]
            for obj in OBJECTS:
                eps.append(
                    _Endpoint(f"{obj}.list", f"/api/v1/{obj}{suffix}", ["GET"], self._lister(obj))
                )
        for obj in OBJECTS:
            eps.append(
                _Endpoint(f"{obj}.show", f"/api/v1/{obj}/{{id}}", ["GET"], self._shower(obj))
            )
        return eps

    def error_response(self, error: ApiError) -> Response:
        kind = error.extra.get("type") or (
            "oauth" if error.status == 401 else "validation" if error.status == 422 else "system"
        )
        entry: dict[str, Any] = {"type": kind, "message": error.message}
        if "field" in error.extra:
            entry["field"] = error.extra["field"]
        return JSON({"errors": [entry]}, status_code=error.status)

    def rate_limit_error(self) -> ApiError:
        return ApiError(429, "RATE_LIMITED", "Too many requests; retry after a small delay")

    def revoke_tokens(self) -> None:
        self.tokens.revoke_all()

    def authenticate(self, req: Req) -> None:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not (
            token == self.credentials.access_token or self.tokens.valid(token)
        ):
            raise ApiError(401, "UNAUTHORIZED", "Must be logged in", type="oauth")

    # --- auth -------------------------------------------------------------------------------------

    def token(self, req: Req) -> Response:
        """OAuth token exchange; any grant with the right client id and secret gets a fresh token."""
        from urllib.parse import parse_qs

        form = {k: v[-1] for k, v in parse_qs(req.body.decode()).items()}
        if not form and req.body:
            form = {k: str(v) for k, v in (req.json() or {}).items()}
        if (form.get("client_id"), form.get("client_secret")) != (
            self.credentials.client_id,
            self.credentials.client_secret,
        ):
            return JSON({"error": "invalid_client"}, status_code=401)
        return JSON(
            {
                "access_token": self.tokens.issue(),
                "token_type": "bearer",
                "expires_in": int(self.tokens.ttl_seconds),
            }
        )

    # --- reads --------------------------------------------------------------------------------------

    def _frame(self, obj: str) -> pl.DataFrame:
        with self.estate.lock:
            return self.estate.frame(VENDOR, obj)

    def _lister(self, obj: str):  # type: ignore[no-untyped-def]
        def handler(req: Req) -> Response:
            return self.list_objects(obj, req)

        return handler

    def _shower(self, obj: str):  # type: ignore[no-untyped-def]
        def handler(req: Req) -> Response:
            rid = req.path_params["id"].removesuffix(".json")
            frame = self._frame(obj).filter(pl.col("id") == rid)
            if frame.height == 0:
                raise ApiError(404, "NOT_FOUND", f"{_SINGULAR[obj]} {rid} not found")
            return JSON(self._envelope(obj, frame, req, total=1, page=1, per_page=1))

        return handler

    def _filtered(self, obj: str, req: Req, frame: pl.DataFrame) -> pl.DataFrame:
        q = req.query
        exprs: list[pl.Expr] = []
        for param, column, op in (
            ("updated_after", "updated_at", ">"),
            ("updated_before", "updated_at", "<"),
            ("created_after", "created_at", ">"),
            ("created_before", "created_at", "<"),
        ):
            if param in q:
                try:
                    value = parse_datetime(q[param])
                except ValueError as exc:
                    raise ApiError(400, "BAD_PARAM", f"{param}: not an ISO-8601 time") from exc
                col = pl.col(column)
                exprs.append(col > value if op == ">" else col < value)
        if "only" in q:
            exprs.append(pl.col("id").is_in([v for v in q["only"].split(",") if v]))
        refs = {
            k[len("external_reference_") :]: v
            for k, v in q.items()
            if k.startswith("external_reference_")
        }
        if refs and obj != "external_references":
            ref_frame = self._frame("external_references").filter(
                pl.col("subject_type") == _SUBJECT_TYPE.get(obj, obj)
            )
            for column, wanted in refs.items():
                if column not in ref_frame.columns:
                    raise ApiError(400, "BAD_PARAM", f"unknown filter external_reference_{column}")
                ref_frame = ref_frame.filter(pl.col(column).is_in(wanted.split(",")))
            exprs.append(pl.col("id").is_in(ref_frame["subject_id"].implode()))
        for key, text in q.items():
            if (
                key in _RESERVED
                or key.startswith("external_reference_")
                or key not in frame.columns
            ):
                continue
            dtype = frame.schema[key]
            try:
                values = [coerce_value(v, dtype) for v in text.split(",")]
            except (ValueError, ArithmeticError) as exc:
                raise ApiError(400, "BAD_PARAM", f"{key}: {exc}") from exc
            exprs.append(pl.col(key).is_in(pl.Series(values, dtype=dtype).implode()))
        return frame.filter(*exprs) if exprs else frame

    def _ordered(self, obj: str, req: Req, order: str) -> pl.DataFrame:
        """The filtered rows in `order`: one cached sort of the whole object, then the filter."""
        frame = self._frame(obj)
        ordered = self.sorted.get((obj, order), frame, lambda f: self._sort(f, order))
        return self._filtered(obj, req, ordered)

    def _sort(self, frame: pl.DataFrame, order: str) -> pl.DataFrame:
        column, _, direction = order.partition(":")
        column = column or "id"
        if column not in frame.columns:
            raise ApiError(400, "BAD_PARAM", f"cannot order by {column}")
        desc = direction.lower() == "desc"
        id_key = pl.col("id").cast(pl.Int64, strict=False)
        keys = [id_key] if column == "id" else [pl.col(column), id_key]
        return frame.sort(keys, descending=desc, nulls_last=True)

    def list_objects(self, obj: str, req: Req) -> Response:
        q = req.query
        try:
            page = max(1, int(q.get("page", 1)))
            per_page = min(MAX_PER_PAGE, max(1, int(q.get("per_page", DEFAULT_PER_PAGE))))
        except ValueError as exc:
            raise ApiError(400, "BAD_PARAM", "page and per_page must be integers") from exc
        order = q.get("order", "id:asc")
        ordered = self._ordered(obj, req, order)
        name = f"{obj}.list"
        if (
            page > 1
            and ordered.height >= (page - 1) * per_page
            and self.faults.fire(name, "change_between_pages")
        ):
            # Touch a record the client has already been given: under updated_at ordering it moves
            # to the end and the next page starts one record later (one record is never seen).
            touched = ordered["id"][(page - 2) * per_page]
            with self.estate.lock:
                self.estate.update(VENDOR, obj, touched, {})
            ordered = self._ordered(obj, req, order)
        start = (page - 1) * per_page
        rows = ordered.slice(start, per_page)
        if page > 1 and start <= ordered.height and self.faults.fire(name, "duplicate_page"):
            rows = pl.concat([ordered.slice(start - 1, 1), rows])
        return JSON(
            self._envelope(obj, rows, req, total=ordered.height, page=page, per_page=per_page)
        )

    def _envelope(
        self, obj: str, rows: pl.DataFrame, req: Req, total: int, page: int, per_page: int
    ) -> dict[str, Any]:
        records = [_decorate(obj, r) for r in kantata_rows(rows)]
        body: dict[str, Any] = {
            "count": total,
            "meta": {
                "count": total,
                "page_count": max(1, math.ceil(total / per_page)),
                "page_number": page,
                "page_size": per_page,
            },
            "results": [{"key": obj, "id": r["id"]} for r in records],
            obj: {r["id"]: r for r in records},
        }
        for name in [i.strip() for i in req.query.get("include", "").split(",") if i.strip()]:
            target, ids = self._included(obj, rows, name)
            if target is None:
                raise ApiError(400, "BAD_PARAM", f"cannot include {name} on {obj}")
            found = self._frame(target).filter(pl.col("id").is_in(ids))
            keyed = body.setdefault(target, {})
            for rec in kantata_rows(found):
                keyed.setdefault(rec["id"], _decorate(target, rec))
        return body

    def _included(self, obj: str, rows: pl.DataFrame, name: str) -> tuple[str | None, list[str]]:
        singular = name[:-1] if name.endswith("s") and name not in _PLURAL else name
        target = _PLURAL.get(singular) or (name if name in OBJECTS else None)
        if target is None:
            return None, []
        id_col = f"{_SINGULAR[target]}_id"
        ids_col = f"{_SINGULAR[target]}_ids"
        if id_col in rows.columns:
            return target, [v for v in rows[id_col].drop_nulls().unique().to_list()]
        if ids_col in rows.columns:
            return target, rows[ids_col].explode().drop_nulls().unique().to_list()
        if target == "external_references" and obj in _SUBJECT_TYPE:
            refs = self._frame(target).filter(
                (pl.col("subject_type") == _SUBJECT_TYPE[obj])
                & pl.col("subject_id").is_in(rows["id"].implode())
            )
            return target, refs["id"].to_list()
        return None, []

    # --- writes -------------------------------------------------------------------------------------

    def _values(self, obj: str, raw: Any, forbidden: set[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise ApiError(422, "INVALID", f"expected a {_SINGULAR[obj]} object", type="validation")
        schema = self._frame(obj).schema
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in schema or key in forbidden:
                raise ApiError(
                    422,
                    "INVALID",
                    f"{key} is not a writable attribute",
                    type="validation",
                    field=key,
                )
            try:
                values[key] = coerce_value(value, schema[key])
            except (ValueError, ArithmeticError) as exc:
                raise ApiError(
                    422, "INVALID", f"{key}: {exc}", type="validation", field=key
                ) from exc
        return values

    def create_workspace(self, req: Req) -> Response:
        body = req.json() or {}
        raw = body.get("workspace") if isinstance(body, dict) else None
        values = self._values(
            "workspaces", raw, {"id", "created_at", "updated_at", "external_reference_ids"}
        )
        if not values.get("title"):
            raise ApiError(
                422, "INVALID", "Please give your project a title", type="validation", field="title"
            )
        values.setdefault("archived", False)
        values.setdefault("status_key", "active")
        values.setdefault("external_reference_ids", [])
        with self.estate.lock:
            (new_id,) = self.estate.insert(VENDOR, "workspaces", [values])
            frame = self.estate.frame(VENDOR, "workspaces").filter(pl.col("id") == new_id)
        return JSON(self._envelope("workspaces", frame, req, total=1, page=1, per_page=1))

    def create_or_update_reference(self, req: Req) -> Response:
        body = req.json() or {}
        raw = body.get("external_reference") if isinstance(body, dict) else None
        values = self._values("external_references", raw, {"id", "created_at", "updated_at"})
        for required in ("subject_type", "subject_id", "service_model_ref"):
            if not values.get(required):
                raise ApiError(
                    422, "INVALID", f"{required} can't be blank", type="validation", field=required
                )
        subject_obj = {v: k for k, v in _SUBJECT_TYPE.items()}.get(values["subject_type"])
        with self.estate.lock:
            if (
                subject_obj is None
                or self._frame(subject_obj).filter(pl.col("id") == values["subject_id"]).height == 0
            ):
                raise ApiError(
                    422, "INVALID", "Subject not found", type="validation", field="subject_id"
                )
            refs = self._frame("external_references")
            # The upsert key: the referenced external record and the Kantata subject it belongs to.
            match = refs.filter(
                (pl.col("service_model_ref") == values["service_model_ref"])
                & (pl.col("subject_type") == values["subject_type"])
                & (pl.col("subject_id") == values["subject_id"])
            )
            if match.height:
                ref_id = match["id"][0]
                self.estate.update(VENDOR, "external_references", ref_id, values)
            else:
                values.setdefault("status", "synced")
                (ref_id,) = self.estate.insert(VENDOR, "external_references", [values])
                if subject_obj == "workspaces":
                    current = self.estate.get(VENDOR, "workspaces", values["subject_id"]) or {}
                    linked = list(current.get("external_reference_ids") or [])
                    self.estate.update(
                        VENDOR,
                        "workspaces",
                        values["subject_id"],
                        {"external_reference_ids": [*linked, ref_id]},
                    )
            frame = self._frame("external_references").filter(pl.col("id") == ref_id)
        return JSON(self._envelope("external_references", frame, req, total=1, page=1, per_page=1))


def _decorate(obj: str, rec: dict[str, Any]) -> dict[str, Any]:
    if obj == "workspaces" and "status_key" in rec:
        key = rec["status_key"]
        rec["status"] = {
            "key": key,
            "message": (key or "").replace("_", " ").title(),
            "color": "green" if key == "active" else "grey",
        }
    return rec
