"""The vendor-call audit: every HTTP call a resync makes is a store row before it leaves, its answer after.

Hooks on the probe's own httpx client record calls made inside ``auditing(...)`` only (the same
probes also serve the collector, whose reads are not resyncs). The call row is written before
the request is sent, so a call whose answer is lost, or whose worker is killed, is still in the
audit. Summaries never carry credentials: no headers but idempotency keys, no body of a token
request, and any field whose name says secret, token, password, key or assertion is masked.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx

import store

_SECRET_WORDS = ("secret", "token", "password", "assertion", "authorization", "api_key", "apikey")
_KEEP_HEADERS = ("idempotency-key", "x-netsuite-idempotency-key")
_ANSWER_HEADERS = ("idempotent-replayed", "location")
_MAX_SUMMARY = 1500


@dataclass(frozen=True)
class _Context:
    db: store.Store
    request_id: int | None
    break_id: str | None
    actor: str
    system: str


_current: ContextVar[_Context | None] = ContextVar("o2c_resync_audit", default=None)


@contextmanager
def auditing(
    db: store.Store, *, request_id: int | None, break_id: str | None, actor: str, system: str
) -> Iterator[None]:
    """Record every vendor call made (in this task) inside the block."""
    token = _current.set(_Context(db, request_id, break_id, actor, system))
    try:
        yield
    finally:
        _current.reset(token)


def attach(client: httpx.AsyncClient) -> None:
    """Add the audit hooks to a probe's client (once; they do nothing outside ``auditing``)."""
    hooks = client.event_hooks
    if _on_request not in hooks["request"]:
        hooks["request"].append(_on_request)
    if _on_response not in hooks["response"]:
        hooks["response"].append(_on_response)
    client.event_hooks = hooks


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "********" if any(w in str(k).lower() for w in _SECRET_WORDS) else _masked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _body_summary(request: httpx.Request) -> Any:
    path = request.url.path.lower()
    if "token" in path or "oauth" in path:
        return "(omitted: credentials request)"
    content = request.content
    if not content:
        return None
    kind = request.headers.get("content-type", "")
    try:
        if "json" in kind:
            return _masked(json.loads(content))
        if "form" in kind:
            return _masked(dict(parse_qsl(content.decode())))
    except (ValueError, UnicodeDecodeError):
        pass
    return f"({len(content)} bytes)"


def _query(request: httpx.Request) -> str:
    params = [
        (k, "********" if any(w in k.lower() for w in _SECRET_WORDS) else v)
        for k, v in request.url.params.multi_items()
    ]
    return "&".join(f"{k}={v}" for k, v in params)


def _clip(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_SUMMARY else text[: _MAX_SUMMARY - 3] + "..."


async def _on_request(request: httpx.Request) -> None:
    ctx = _current.get()
    if ctx is None:
        return
    call_id = uuid.uuid4().hex
    request.extensions["o2c_resync_call"] = (call_id, time.perf_counter(), ctx)
    summary: dict[str, Any] = {"body": _body_summary(request)}
    query = _query(request)
    if query:
        summary["query"] = query
    kept = {h: request.headers[h] for h in _KEEP_HEADERS if h in request.headers}
    if kept:
        summary["headers"] = kept
    # Written before the request leaves: an unanswered or interrupted call stays on record.
    with ctx.db.begin(write=True) as conn:
        store.append_resync_audit(
            conn, kind="vendor_call", actor=ctx.actor, at=datetime.now(UTC),
            request_id=ctx.request_id, break_id=ctx.break_id, system=ctx.system,
            method=request.method, path=request.url.path, call_id=call_id,
            summary=_clip(summary),
        )  # fmt: skip


def _answer_summary(response: httpx.Response) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in _ANSWER_HEADERS:
        if name in response.headers:
            summary[name] = response.headers[name]
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        summary["body"] = f"(not JSON, {len(response.content)} bytes)"
        return summary
    if isinstance(body, dict):
        picked = {
            k: body[k] for k in ("id", "object", "status", "count", "totalResults") if k in body
        }
        for key in ("error", "errors", "o:errorDetails", "title"):
            if key in body:
                picked[key] = body[key]
        summary["body"] = _masked(picked)
    elif isinstance(body, list):
        summary["body"] = _masked(body[:3])
    return summary


async def _on_response(response: httpx.Response) -> None:
    info = response.request.extensions.get("o2c_resync_call")
    if info is None:
        return
    call_id, started, ctx = info
    await response.aread()
    with ctx.db.begin(write=True) as conn:
        store.append_resync_audit(
            conn, kind="vendor_answer", actor=ctx.actor, at=datetime.now(UTC),
            request_id=ctx.request_id, break_id=ctx.break_id, system=ctx.system,
            method=response.request.method, path=response.request.url.path,
            status_code=response.status_code,
            duration_ms=int((time.perf_counter() - started) * 1000), call_id=call_id,
            summary=_clip(_answer_summary(response)),
        )  # fmt: skip
