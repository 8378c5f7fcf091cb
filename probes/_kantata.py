"""Kantata OX probe: ``updated_after`` + ``order=updated_at:asc`` in keyset windows, keyed envelopes.

Plain ``page``/``per_page`` paging over a changing result loses records: when a record already
served is modified it moves to the end, every later record shifts one place up, and the record
at the page boundary is never served. So each request starts a new window at the last
``updated_at`` served (``updated_after`` = that second minus one, since the filter is strict and
the wire has whole seconds), on page 1; records of the window already served are dropped. Only
when a whole page shares one second does the probe step ``page``, inside that second alone
(``updated_after``/``updated_before`` around it). A record modified meanwhile leaves that bounded
window, so the group's ``count`` changes and the probe steps through the second again; an
unchanged count means no record left it. The cursor of a page is the ``updated_at`` of its last record.

A long read (a first sync, a big backlog) goes faster with several requests in flight, which
page/per_page allows only over a result no record can enter: the range below the second of the
newest record (asked for first, ``order=updated_at:desc``) lies in the past, and a record
modified during the read moves to "now", out of it. So the rest of a long read is that bounded
range (``updated_after``/``updated_before``), its pages requested ``ProbeSettings.concurrency``
at a time and passed on in order once every answer of the batch reported the range's first
``count``: a changed count means a record left the range and later pages shifted, so the batch
is dropped and the range is read again from the last record passed on. The newest second and
whatever changed meanwhile are then read as above.

Envelope: ``results`` gives the order, objects sit under their plural key by string id,
``include=external_references`` brings a workspace's links (the Salesforce opportunity) in the
same answer. Kantata sends no ``Retry-After`` on 429; backoff with jitter applies.

Writes: ``create_project`` looks the project up by its external reference (the opportunity id)
before creating, then links it with ``external_references/create_or_update`` (an upsert).
Creating a workspace has no idempotency key, so it is never blindly retried: after a lost answer
the probe looks up again (by reference, then by the title, which carries the opportunity id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

from probes._base import (
    Health,
    KantataConfig,
    Page,
    ProbeError,
    ProbeNotFound,
    ProbeTimeout,
    ProbeUnavailable,
    SourceCount,
    WriteResult,
    decode_cursor,
    encode_cursor,
)
from probes._http import HttpProbe
from probes._mapping import Col, Spec, to_canonical

SYSTEM = "kantata"
MAX_PER_PAGE = 200
MAX_PASSES = 20
"""Passes over one second (or one window) that keeps changing while it is read before the read
fails."""
BULK_MIN_PAGES = 4
"""Pages still to read (by the first answer's ``page_count``) from which a read goes windowed."""


@dataclass
class _Read:
    """What one read has passed on so far: (id, updated_at) pairs, and the newest stamp."""

    served: set[tuple[str, str]] = field(default_factory=set)
    last: str | None = None


def _opportunity_ref(record: dict[str, Any]) -> Any:
    for ref in record.get("_external_references") or ():
        if ref.get("service_name") == "Salesforce" and ref.get("service_model") == "Opportunity":
            return ref.get("service_model_ref")
    return None


def _activated_at(record: dict[str, Any]) -> Any:
    # Workspaces are active from creation in Kantata unless created archived; the store's
    # history records later status changes with the time they were observed.
    if record.get("status_key") in ("active", "completed") and not record.get("archived"):
        return record.get("created_at")
    return None


def _entry_status(record: dict[str, Any]) -> Any:
    if record.get("is_invoiced") is True:
        return "invoiced"
    if record.get("approved") is True:
        return "approved"
    if record.get("approved") is False:
        return "submitted"
    return None


def _first_workspace(record: dict[str, Any]) -> Any:
    ids = record.get("workspace_ids")
    return ids[0] if isinstance(ids, list) and ids else None


def _psa_invoice_status(record: dict[str, Any]) -> Any:
    if record.get("draft") is True:
        return "draft"
    status = record.get("status")
    known = {"new": "open", "accepted payment": "paid", "cancelled": "void"}
    return known.get(status, status) if isinstance(status, str) else status


_ID = Col("id", "id", "str", required=True)
_MODIFIED = Col("modified", "updated_at", "datetime", required=True)

SPECS: dict[str, Spec] = {
    "projects": Spec(
        SYSTEM,
        "projects",
        "projects",
        id=_ID,
        modified=_MODIFIED,
        columns=(
            Col("opportunity_ref", _opportunity_ref, "str"),
            Col("name", "title", "str"),
            Col("status", "status_key", "str", required=True),
            Col("budget_minor", "price_in_cents", "minor"),
            Col("currency", "currency", "currency", required=True),
            Col("created_at_source", "created_at", "datetime"),
            Col("activated_at", _activated_at, "datetime"),
        ),
    ),
    "time_entries": Spec(
        SYSTEM,
        "time_entries",
        "time_entries",
        id=_ID,
        modified=_MODIFIED,
        columns=(
            Col("project_ref", "workspace_id", "str", required=True),
            Col("entry_date", "date_performed", "date", required=True),
            Col("minutes", "time_in_minutes", "int", required=True),
            Col("billable", "billable", "bool", required=True),
            Col("rate_minor", "rate_in_cents", "minor"),
            Col("currency", "currency", "currency", required=True),
            Col("status", _entry_status, "str", required=True),
            Col("approved_at", "approved_at", "datetime"),
            Col("invoice_ref", "invoice_id", "str"),
        ),
    ),
    "milestones": Spec(
        SYSTEM,
        "milestones",
        "milestones",
        id=_ID,
        modified=_MODIFIED,
        columns=(
            Col("project_ref", "workspace_id", "str", required=True),
            Col("name", "title", "str"),
            Col("amount_minor", "price_in_cents", "minor"),
            Col("currency", "currency", "currency", required=True),
            Col("status", "state", "str", required=True),
            Col("completed_at", "completed_at", "datetime"),
            Col("invoice_ref", "invoice_id", "str"),
        ),
    ),
    "invoices": Spec(
        SYSTEM,
        "invoices",
        "invoices",
        id=_ID,
        modified=_MODIFIED,
        columns=(
            Col("number", "user_invoice_number", "str"),
            Col("project_ref", _first_workspace, "str"),
            Col("total_minor", "balance_in_cents", "minor"),
            Col("currency", "currency", "currency", required=True),
            Col("status", _psa_invoice_status, "str", required=True),
            Col("issued_on", "invoice_date", "date"),
            Col("due_on", "due_date", "date"),
        ),
    ),
}

# stream -> (Kantata object, fixed list parameters)
OBJECTS: dict[str, tuple[str, dict[str, str]]] = {
    "projects": ("workspaces", {"include": "external_references"}),
    "time_entries": ("time_entries", {}),
    "milestones": ("stories", {"story_type": "milestone"}),
    "invoices": ("invoices", {}),
}


def parse_iso(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _stamp_text(record: dict[str, Any]) -> str | None:
    """``updated_at`` when it is a readable time (a quarantined record's may not be)."""
    text = record.get("updated_at")
    if not isinstance(text, str):
        return None
    try:
        parse_iso(text)
    except ValueError:
        return None
    return text


def _tail(records: list[dict[str, Any]]) -> str | None:
    """The readable ``updated_at`` of the last record that has one."""
    return next((t for r in reversed(records) if (t := _stamp_text(r)) is not None), None)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KantataProbe(HttpProbe):
    """Kantata OX PSA: projects (workspaces), time entries, milestones, PSA invoices."""

    system: ClassVar[str] = SYSTEM
    streams: ClassVar[tuple[str, ...]] = ("projects", "time_entries", "milestones", "invoices")
    entities: ClassVar[dict[str, str]] = {
        "projects": "projects",
        "time_entries": "time_entries",
        "milestones": "milestones",
        "invoices": "invoices",
    }
    config: KantataConfig

    def __init__(self, client: httpx.AsyncClient, config: KantataConfig, **kwargs: Any) -> None:
        super().__init__(client, config, **kwargs)
        self._base = config.base_url.rstrip("/")

    async def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.token}"}

    # ------------------------------------------------------------------ reads

    def _records(self, body: Any, obj: str) -> list[dict[str, Any]]:
        """The page's records in ``results`` order, with included external references attached."""
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise ProbeError("kantata: list answer without results", system=SYSTEM)
        keyed = body.get(obj) or {}
        refs = body.get("external_references") or {}
        out: list[dict[str, Any]] = []
        for entry in body["results"]:
            if not isinstance(entry, dict) or entry.get("key") != obj:
                continue
            record = keyed.get(str(entry.get("id")))
            if not isinstance(record, dict):
                # Listed in results but missing from the keyed objects: a broken envelope.
                record = {"id": entry.get("id"), "_missing": True}
            if obj == "workspaces":
                record = {
                    **record,
                    "_external_references": [
                        refs[r] for r in record.get("external_reference_ids") or () if r in refs
                    ],
                }
            out.append(record)
        return out

    def _take(self, stream: str, records: list[dict[str, Any]], read: _Read) -> Page | None:
        """The page of ``records`` not passed on before in this read (None if there are none);
        its cursor is the newest stamp passed on so far."""
        spec = SPECS[stream]
        fresh = [
            r for r in records if (str(r.get("id")), str(r.get("updated_at"))) not in read.served
        ]
        read.served.update((str(r.get("id")), str(r.get("updated_at"))) for r in fresh)
        tail = _tail(records)
        if tail is not None and (read.last is None or parse_iso(tail) >= parse_iso(read.last)):
            read.last = tail
        if not fresh:
            return None
        frame, quarantine = to_canonical(spec, fresh)
        return Page(
            system=SYSTEM,
            stream=stream,
            frames={spec.entity: frame},
            quarantine=tuple(quarantine),
            cursor=encode_cursor(since=read.last) if read.last else None,
            records_read=len(fresh),
        )

    async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        obj, fixed = OBJECTS[stream]
        per_page = min(self.settings.page_size or MAX_PER_PAGE, MAX_PER_PAGE)
        since = decode_cursor(cursor).get("since")
        window: datetime | None = None
        if since:
            window = parse_iso(since) - self.settings.lookback
        read = _Read(last=since)
        page_number = 1
        group: datetime | None = None  # the second being stepped through by page, if any
        counts: set[int] = set()  # the group's size as each page of this pass reported it
        passes = 0
        windowed = self.settings.concurrency < 2  # a read goes windowed at most once
        while True:
            params = {**fixed, "order": "updated_at:asc", "per_page": str(per_page)}
            params["page"] = str(page_number)
            if group is not None:
                params["updated_after"] = iso(group - timedelta(seconds=1))
                params["updated_before"] = iso(group + timedelta(seconds=1))
            elif window is not None:
                params["updated_after"] = iso(window)
            answer = await self.call(
                "GET", f"{self._base}/{obj}.json", stream=stream, params=params
            )
            records = self._records(answer.body, obj)
            page = self._take(stream, records, read)
            if page is not None:
                yield page
            tail = _tail(records)
            meta = (answer.body or {}).get("meta") or {}
            page_count = int(meta.get("page_count", 1))
            finished = len(records) < per_page or page_count <= page_number
            if group is not None:
                counts.add(int(meta.get("count", -1)))
                if not finished:
                    page_number += 1
                    continue
                if len(counts) > 1:
                    # The second's size changed while we stepped through it: a record left
                    # (modified, so it is now later in the stream) and the rest shifted up one
                    # place, so one may have been skipped. Step through it again.
                    passes += 1
                    if passes > MAX_PASSES:
                        raise ProbeError(
                            f"kantata: {stream} kept changing inside {iso(group)}",
                            system=SYSTEM,
                            stream=stream,
                        )
                    page_number, counts = 1, set()
                    continue
                # The whole second is read: go on after it (updated_after is strict).
                window, group, page_number, passes = group, None, 1, 0
                continue
            if finished:
                break
            if not windowed and page_count - page_number >= BULK_MIN_PAGES and tail:
                windowed = True
                start = parse_iso(tail).replace(microsecond=0)
                async for page in self._bounded(stream, per_page, start, read):
                    yield page
                if read.last is not None:
                    window = max(window or parse_iso(read.last), parse_iso(read.last))
                    window -= timedelta(seconds=1)
                page_number = 1
                continue
            next_window = parse_iso(tail) - timedelta(seconds=1) if tail else None
            if next_window is not None and (window is None or next_window > window):
                window = next_window
            elif tail is not None:
                # A whole page inside one second: step through that second alone, by page.
                group = parse_iso(tail).replace(microsecond=0)
                page_number, counts, passes = 1, set(), 0
            else:
                raise ProbeError(
                    f"kantata: {stream} page without readable updated_at", system=SYSTEM
                )
        if read.last is None:
            return
        if not read.served:
            # Nothing changed: still confirm the cursor so the cycle records a success.
            yield Page(system=SYSTEM, stream=stream, cursor=encode_cursor(since=read.last))

    async def _bounded(
        self, stream: str, per_page: int, start: datetime, read: _Read
    ) -> AsyncIterator[Page]:
        """The records from ``start`` up to the newest record's second, ``concurrency`` pages at
        a time; a batch is passed on once its answers agree with the range's count.

        A changed count means a record left the range (it was modified, so it is now stamped
        after it) and the pages after it shifted: the batch is dropped and the range is read
        again from the last record passed on.
        """
        obj, fixed = OBJECTS[stream]
        url = f"{self._base}/{obj}.json"
        newest = {k: v for k, v in fixed.items() if k != "include"}
        newest.update(order="updated_at:desc", per_page="1", page="1")
        newest["updated_after"] = iso(start - timedelta(seconds=1))
        answer = await self.call("GET", url, stream=stream, params=newest)
        top = _tail(self._records(answer.body, obj))
        if top is None:
            return
        # Records changed from now on are stamped at or after the newest one: never below `end`.
        end = parse_iso(top).replace(microsecond=0)
        in_flight = max(1, self.settings.concurrency)
        low, passes = start, 0
        while low < end:
            params = {**fixed, "order": "updated_at:asc", "per_page": str(per_page)}
            params["updated_after"] = iso(low - timedelta(seconds=1))  # strict: from `low` on
            params["updated_before"] = iso(end)
            number, expected = 1, None
            while True:
                numbers = range(number, number + in_flight)
                answers = await asyncio.gather(
                    *(
                        self.call("GET", url, stream=stream, params={**params, "page": str(n)})
                        for n in numbers
                    )
                )
                metas = [(a.body or {}).get("meta") or {} for a in answers]
                counts = {int(m.get("count", -1)) for m in metas}
                if expected is not None:
                    counts.add(expected)
                if len(counts) > 1:
                    break
                expected = counts.pop()
                page_count = max(int(m.get("page_count", 1)) for m in metas)
                for n, a in zip(numbers, answers, strict=True):
                    if n > page_count:
                        break
                    page = self._take(stream, self._records(a.body, obj), read)
                    if page is not None:
                        passes = 0
                        yield page
                number += in_flight
                if number > page_count:
                    return
            passes += 1
            if passes > MAX_PASSES:
                raise ProbeError(
                    f"kantata: {stream} kept changing while {iso(low)}..{iso(end)} was read",
                    system=SYSTEM,
                    stream=stream,
                )
            if read.last is not None:
                low = max(low, parse_iso(read.last).replace(microsecond=0))

    async def count(self, stream: str) -> SourceCount:
        self.check_stream(stream)
        obj, fixed = OBJECTS[stream]
        params = {k: v for k, v in fixed.items() if k != "include"}
        answer = await self.call(
            "GET",
            f"{self._base}/{obj}.json",
            stream=stream,
            params={**params, "per_page": "1", "page": "1"},
        )
        total = (answer.body or {}).get("count")
        if not isinstance(total, int):
            raise ProbeError("kantata: list answer without count", system=SYSTEM, stream=stream)
        return SourceCount(SYSTEM, stream, self.entities[stream], total)

    async def refetch(self, stream: str, source_id: str) -> Page:
        self.check_stream(stream)
        obj, fixed = OBJECTS[stream]
        params = {"include": fixed["include"]} if "include" in fixed else {}
        answer = await self.call(
            "GET",
            f"{self._base}/{obj}/{source_id}.json",
            stream=stream,
            source_id=source_id,
            params=params,
        )
        records = self._records(answer.body, obj)
        frame, quarantine = to_canonical(SPECS[stream], records)
        return Page(
            system=SYSTEM,
            stream=stream,
            frames={SPECS[stream].entity: frame},
            quarantine=tuple(quarantine),
            records_read=len(records),
        )

    async def health(self) -> Health:
        started = time.monotonic()
        try:
            await self.call("GET", f"{self._base}/workspaces.json", params={"per_page": "1"})
        except ProbeError as exc:
            return Health(SYSTEM, False, time.monotonic() - started, str(exc))
        return Health(SYSTEM, True, time.monotonic() - started, "ok")

    # ------------------------------------------------------------------ writes

    async def find_project(self, opportunity_id: str, title: str | None = None) -> str | None:
        """The workspace linked to a Salesforce opportunity (or carrying ``title``), if any."""
        answer = await self.call(
            "GET",
            f"{self._base}/workspaces.json",
            params={
                "external_reference_service_model": "Opportunity",
                "external_reference_service_model_ref": opportunity_id,
                "per_page": "2",
            },
        )
        found = self._records(answer.body, "workspaces")
        if not found and title:
            answer = await self.call(
                "GET", f"{self._base}/workspaces.json", params={"title": title, "per_page": "2"}
            )
            found = self._records(answer.body, "workspaces")
        return str(found[0]["id"]) if found else None

    async def link_opportunity(self, workspace_id: str, opportunity_id: str, stage: str) -> str:
        """Upsert the external reference workspace -> opportunity (safe to repeat)."""
        answer = await self.call(
            "POST",
            f"{self._base}/external_references/create_or_update.json",
            json={
                "external_reference": {
                    "service_name": "Salesforce",
                    "service_model": "Opportunity",
                    "service_model_ref": opportunity_id,
                    "subject_type": "Workspace",
                    "subject_id": workspace_id,
                    "status": "synced",
                    "external_status": stage,
                }
            },
        )
        refs = self._records(answer.body, "external_references")
        return str(refs[0]["id"]) if refs else ""

    async def create_project(
        self,
        opportunity_id: str,
        *,
        title: str,
        price_minor: int,
        currency: str,
        start_date: str | None = None,
        due_date: str | None = None,
        stage: str = "Closed Won",
    ) -> WriteResult:
        """Create the PSA project of a won deal, once: look up, create, link (idempotent).

        ``title`` should carry the opportunity id: it is the fallback key when an answer to the
        create was lost before the link existed.
        """
        attempted = False  # a create whose answer was lost may have been applied
        for _ in range(self.settings.retry.attempts):
            existing = await self.find_project(opportunity_id, title)
            if existing is not None:
                await self.link_opportunity(existing, opportunity_id, stage)
                return WriteResult(SYSTEM, "workspace", existing, attempted, opportunity_id)
            workspace = {
                "title": title,
                "price_in_cents": price_minor,
                "currency": currency.upper(),
                "start_date": start_date,
                "due_date": due_date,
            }
            try:
                answer = await self.call(
                    "POST",
                    f"{self._base}/workspaces.json",
                    json={"workspace": {k: v for k, v in workspace.items() if v is not None}},
                    idempotent=False,
                )
            except (ProbeTimeout, ProbeUnavailable):
                attempted = True
                continue  # it may exist now: look up again before another create
            created = self._records(answer.body, "workspaces")
            if not created:
                raise ProbeError("kantata: create answered without a workspace", system=SYSTEM)
            workspace_id = str(created[0]["id"])
            await self.link_opportunity(workspace_id, opportunity_id, stage)
            return WriteResult(SYSTEM, "workspace", workspace_id, True, opportunity_id)
        raise ProbeNotFound(
            f"kantata: could not create or find the project of {opportunity_id}",
            system=SYSTEM,
            source_id=opportunity_id,
        )
