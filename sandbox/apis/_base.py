"""What the four simulators share: request wrapping, auth tokens, faults, admin routes, JSON."""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import polars as pl
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sandbox.apis._faults import FaultConfigError, FaultInjector, FaultPlan


class ApiError(Exception):
    """Raised by a handler; the simulator renders it in its vendor's error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


def json_bytes(payload: Any) -> bytes:
    return orjson.dumps(payload)


class JSON(Response):
    """A JSON response serialised with orjson (fast, and it refuses floats for NaN/inf)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else json_bytes(content)


class DroppedResponse(Response):
    """Starts the response, then returns: uvicorn closes the connection with no body delivered.

    Used for "the write committed but its answer was lost": the client sees a disconnect after the
    server did the work, exactly the case that idempotency keys and external ids exist for.
    """

    def __init__(self) -> None:
        super().__init__(content=b"", status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )


@dataclass
class Req:
    """What a handler needs from a request, read on the event loop and handed to a worker thread."""

    method: str
    path: str
    path_params: dict[str, str]
    query: QueryParams
    headers: Headers
    body: bytes
    base_url: str

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "JSON_PARSER_ERROR", f"invalid JSON body: {exc}") from exc


class TokenStore:
    """Access tokens with a wall-clock lifetime; `revoke_all` is how "token expiry" is injected."""

    def __init__(self, ttl_seconds: float, prefix: str = ""):
        self.ttl_seconds = ttl_seconds
        self.prefix = prefix
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = self.prefix + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.ttl_seconds
        return token

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return False
            if expiry < time.monotonic():
                del self._tokens[token]
                return False
            return True

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()


class SortCache:
    """Sorted copies of estate frames, reused until the estate hands out a new frame object.

    The estate caches each frame until the next write or clock move, so identity tells whether a
    sort is still valid; a filter on a sorted frame keeps its order, so one sort serves every page
    and every `updated_after` of a poll instead of sorting millions of rows per request.
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[pl.DataFrame, pl.DataFrame]] = {}
        self._lock = threading.Lock()

    def get(
        self, key: Hashable, frame: pl.DataFrame, sort: Callable[[pl.DataFrame], pl.DataFrame]
    ) -> pl.DataFrame:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] is frame:
                return hit[1]
        ordered = sort(frame)
        with self._lock:
            self._entries[key] = (frame, ordered)
        return ordered


@dataclass
class _Endpoint:
    name: str
    path: str
    methods: list[str]
    handler: Callable[[Req], Response]
    write: bool = False
    auth: bool = True


class Simulator(ABC):
    """Base of a vendor simulator: subclasses declare endpoints and their vendor's envelopes."""

    vendor: ClassVar[str]

    def __init__(self, estate: Any, faults: FaultPlan | None = None):
        self.estate = estate
        self._endpoints = self.endpoints()
        self.faults = FaultInjector(self.vendor, tuple(e.name for e in self._endpoints), faults)
        self.base_url = ""  # set by the server once the port is known
        self.sorted = SortCache()

    # --- to implement --------------------------------------------------------------------------

    @abstractmethod
    def endpoints(self) -> list[_Endpoint]:
        """The vendor's routes, each named for fault rules (`GET /__admin/faults` lists them)."""

    @abstractmethod
    def error_response(self, error: ApiError) -> Response:
        """`error` in the vendor's own error envelope."""

    def rate_limit_error(self) -> ApiError:
        return ApiError(429, "RATE_LIMITED", "Too many requests")

    def unauthorized_error(self) -> ApiError:
        """What this vendor answers to a request whose credentials it does not accept."""
        try:
            self.authenticate(Req("GET", "/", {}, QueryParams(""), Headers({}), b"", ""))
        except ApiError as exc:
            return exc
        return ApiError(401, "UNAUTHORIZED", "Unauthorized")

    @abstractmethod
    def authenticate(self, req: Req) -> None:
        """Raise ApiError(401, ...) unless the request carries valid credentials."""

    def revoke_tokens(self) -> None:
        """Forget every access token issued so far (token-expiry fault); static keys: nothing."""
        return None

    def decorate(self, req: Req | None, response: Response) -> None:
        """Add headers every response of this vendor carries (none by default)."""
        return None

    # --- machinery -----------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route(e.path, self._wrap(e), methods=e.methods, name=e.name) for e in self._endpoints
        ]
        routes += [
            Route("/__admin/faults", self._admin_faults, methods=["GET", "POST", "DELETE"]),
            Route("/__admin/faults/reset", self._admin_reset, methods=["POST"]),
            Route("/__admin/health", self._admin_health, methods=["GET"]),
        ]
        return Starlette(routes=routes)

    def _source_available(self) -> bool:
        # The estate schedules "stale source" outages on its own clock (ground truth records them).
        check = getattr(self.estate, "source_available", None)
        return True if check is None else bool(check(self.vendor))

    def _error(self, req: Req | None, error: ApiError) -> Response:
        response = self.error_response(error)
        for key, value in error.headers.items():
            response.headers[key] = value
        self.decorate(req, response)
        return response

    def _wrap(self, ep: _Endpoint) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            faults = self.faults
            req = Req(
                method=request.method,
                path=request.url.path,
                path_params=dict(request.path_params),
                query=request.query_params,
                headers=request.headers,
                body=await request.body(),
                base_url=self.base_url or str(request.base_url).rstrip("/"),
            )
            if faults.fire(ep.name, "down") or not self._source_available():
                return self._error(req, ApiError(503, "SERVICE_UNAVAILABLE", "Service unavailable"))
            hang = faults.fire(ep.name, "hang")
            if hang:
                await asyncio.sleep(float(hang.params.get("seconds", 60)))
                # The client gave up long ago. Answering without running the handler keeps a late
                # request from writing, or from using up the fault rules of whatever runs now.
                return self._error(req, ApiError(504, "GATEWAY_TIMEOUT", "The request timed out"))
            latency = faults.fire(ep.name, "latency")
            if latency:
                if "seconds" in latency.params:
                    delay = float(latency.params["seconds"])
                else:
                    low = float(latency.params.get("min", 0.0))
                    delay = faults.uniform(low, float(latency.params.get("max", low)))
                await asyncio.sleep(delay)
            if faults.fire(ep.name, "rate_limit"):
                return self._error(req, self.rate_limit_error())
            err = faults.fire(ep.name, "error")
            if err:
                status = int(err.params.get("status", 500))
                if status == 401:
                    return self._error(req, self.unauthorized_error())
                return self._error(req, ApiError(status, "UNEXPECTED_ERROR", "Injected failure"))
            try:
                if ep.auth:
                    if faults.fire(ep.name, "token_expiry"):
                        self.revoke_tokens()
                    self.authenticate(req)
                response = await run_in_threadpool(ep.handler, req)
            except ApiError as exc:
                return self._error(req, exc)
            if ep.write:
                lost = faults.fire(ep.name, "lost_response")
                if lost:
                    if lost.params.get("mode", "drop") == "drop":
                        return DroppedResponse()
                    return self._error(req, ApiError(500, "UNEXPECTED_ERROR", "Internal error"))
            self.decorate(req, response)
            body = bytes(response.body)
            if faults.fire(ep.name, "malformed_json"):
                return _mangled(response, body.replace(b":", b"=", 1) + b"<!--")
            if faults.fire(ep.name, "truncated_json"):
                return _mangled(response, body[: max(1, len(body) // 2)])
            return response

        return handle

    async def _admin_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                raw = orjson.loads(await request.body() or b"{}")
                replace = bool(raw.pop("replace", False)) if isinstance(raw, dict) else False
                plan = FaultPlan.from_obj(raw, default_vendor=self.vendor)
            except (orjson.JSONDecodeError, FaultConfigError, TypeError, ValueError) as exc:
                return JSON({"error": str(exc)}, status_code=400)
            self.faults.load(plan, replace=replace)
        elif request.method == "DELETE":
            self.faults.reset()
        return JSON(self.faults.snapshot())

    async def _admin_reset(self, request: Request) -> Response:
        self.faults.reset()
        return JSON(self.faults.snapshot())

    async def _admin_health(self, request: Request) -> Response:
        return JSON({"vendor": self.vendor, "ok": True, "now": self.estate.now.isoformat()})


def _mangled(response: Response, body: bytes) -> Response:
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(body, status_code=response.status_code, headers=headers)


def jwt_claims(assertion: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the sandbox has no client certificates on file)."""
    try:
        payload = assertion.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}
