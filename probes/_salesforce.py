"""Salesforce probe: client-credentials token, SOQL ``queryAll`` on SystemModstamp, the daily budget.

Reads ``Account`` and ``Opportunity`` with
``SELECT … FROM X WHERE SystemModstamp >= <cursor - lookback> ORDER BY SystemModstamp, Id``
through ``queryAll`` (so deleted rows arrive with ``IsDeleted = true``) and follows
``nextRecordsUrl``. SOQL has no tuple comparison and the overlap window re-reads the boundary
anyway, so ``Id`` is the tie-breaker of the order (stable paging), and re-read records are
absorbed by the idempotent upsert.

A page's cursor is the ``SystemModstamp`` of its *last* record: the result is a snapshot sorted by
the stamp, so every record after it has a stamp at least as new. (A record modified while we page
comes back with its new values, possibly with a stamp newer than the cursor; it is re-read by the
next cycle, never skipped.)

Every response carries ``Sforce-Limit-Info: api-usage=N/M``. When the usage reaches
``(1 - budget_reserve) * M`` the read stops after the current page and yields an empty page with
``partial`` set; the next cycle resumes from the stored cursor. ``403 REQUEST_LIMIT_EXCEEDED``
with usage at the limit is ``ProbeQuotaExhausted`` (not retried); below the limit it is a
transient rate signal and is retried with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from probes._base import (
    Health,
    Page,
    ProbeError,
    ProbeNotFound,
    ProbeResponseError,
    Quota,
    SalesforceConfig,
    SourceCount,
    WriteResult,
    decode_cursor,
    encode_cursor,
)
from probes._http import HttpProbe
from probes._mapping import Col, Spec, to_canonical
from store import to_minor

SYSTEM = "salesforce"
log = logging.getLogger(__name__)
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")

_BILLING_MODELS = {
    "Time and Materials": "time_and_materials",
    "Fixed Fee": "fixed_fee",
    "Retainer": "retainer",
}


def _won_at(record: dict[str, Any]) -> str | None:
    # The moment the deal entered Closed Won, from its stage history (OpportunityHistory
    # CreatedDate, second precision); where no history row is visible, the close date at
    # midnight UTC (day precision).
    if record.get("IsWon") is not True:
        return None
    entered = record.get("_won_entered_at")
    if isinstance(entered, str):
        return entered
    if isinstance(record.get("CloseDate"), str):
        return f"{record['CloseDate']}T00:00:00+00:00"
    return None


def _billing_model(record: dict[str, Any]) -> Any:
    value = record.get("Billing_Model__c")
    return _BILLING_MODELS.get(value, value) if isinstance(value, str) else value


_MODIFIED = Col("modified", "SystemModstamp", "datetime", required=True)
_DELETED = Col("deleted", "IsDeleted", "bool")

SPECS: dict[str, Spec] = {
    "accounts": Spec(
        SYSTEM,
        "accounts",
        "accounts",
        id=Col("id", "Id", "str", required=True),
        modified=_MODIFIED,
        deleted=_DELETED,
        columns=(
            Col("name", "Name", "str"),
            Col("crm_account_id", "Id", "str"),
            Col("legal_entity", "Legal_Entity__c", "str"),
            Col("currency", "CurrencyIsoCode", "currency", required=True),
        ),
    ),
    "opportunities": Spec(
        SYSTEM,
        "opportunities",
        "opportunities",
        id=Col("id", "Id", "str", required=True),
        modified=_MODIFIED,
        deleted=_DELETED,
        columns=(
            Col("account_ref", "AccountId", "str"),
            Col("name", "Name", "str"),
            Col("stage", "StageName", "str", required=True),
            Col("is_closed", "IsClosed", "bool", required=True),
            Col("is_won", "IsWon", "bool", required=True),
            Col("won_at", _won_at, "datetime"),
            Col("close_date", "CloseDate", "date"),
            Col("amount_minor", "Amount", "money"),
            Col("currency", "CurrencyIsoCode", "currency", required=True),
            Col("billing_model", _billing_model, "str"),
            Col("created_at_source", "CreatedDate", "datetime"),
        ),
    ),
}

SOBJECTS = {"accounts": "Account", "opportunities": "Opportunity"}
WON_STAGE = "Closed Won"
HISTORY_IDS_PER_QUERY = 200
"""Opportunity ids per OpportunityHistory query (keeps the GET URL short)."""
_SOQL_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
FIELDS = {
    "accounts": (
        "Id, Name, CurrencyIsoCode, Legal_Entity__c, IsDeleted, CreatedDate, SystemModstamp"
    ),
    "opportunities": (
        "Id, Name, AccountId, StageName, IsWon, IsClosed, Amount, CurrencyIsoCode, CloseDate, "
        "Billing_Model__c, IsDeleted, CreatedDate, SystemModstamp"
    ),
}


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal (unquoted, UTC, whole seconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_sf_datetime(text: str) -> datetime:
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text).astimezone(UTC)


def _stamp_text(record: dict[str, Any]) -> str | None:
    """``SystemModstamp`` when it is a readable time (a quarantined record's may not be)."""
    text = record.get("SystemModstamp")
    if not isinstance(text, str):
        return None
    try:
        parse_sf_datetime(text)
    except ValueError:
        return None
    return text


class SalesforceProbe(HttpProbe):
    """Salesforce CRM: accounts and opportunities."""

    system: ClassVar[str] = SYSTEM
    streams: ClassVar[tuple[str, ...]] = ("accounts", "opportunities")
    entities: ClassVar[dict[str, str]] = {"accounts": "accounts", "opportunities": "opportunities"}
    config: SalesforceConfig

    def __init__(self, client: httpx.AsyncClient, config: SalesforceConfig, **kwargs: Any) -> None:
        super().__init__(client, config, **kwargs)
        self._token: str | None = None
        self._instance_url = config.instance_url.rstrip("/")
        self._token_lock = asyncio.Lock()

    # ------------------------------------------------------------------ auth and limits

    @property
    def _data(self) -> str:
        return f"{self._instance_url}/services/data/v{self.config.api_version}"

    async def auth_headers(self) -> dict[str, str]:
        if self._token is None:
            await self._fetch_token(None)
        return {"Authorization": f"Bearer {self._token}"}

    async def refresh_token(self) -> bool:
        await self._fetch_token(self._token)
        return True

    async def _fetch_token(self, stale: str | None) -> None:
        async with self._token_lock:
            if self._token is not None and self._token != stale:
                return  # another task refreshed it meanwhile
            answer = await self.call(
                "POST",
                f"{self.config.instance_url.rstrip('/')}/services/oauth2/token",
                auth=False,
                data={"grant_type": "client_credentials"},
                auth_basic=(self.config.client_id, self.config.client_secret),
            )
            body = answer.body or {}
            token = body.get("access_token")
            if not isinstance(token, str):
                raise ProbeError("salesforce: token response without access_token", system=SYSTEM)
            self._token = token
            self._instance_url = str(body.get("instance_url") or self._instance_url).rstrip("/")

    async def call(self, method: str, url: str, **kwargs: Any) -> Any:
        basic = kwargs.pop("auth_basic", None)
        if basic is not None:
            kwargs["auth"] = False
            kwargs["headers"] = {
                **kwargs.get("headers", {}),
                "Authorization": "Basic " + base64.b64encode(":".join(basic).encode()).decode(),
            }
        return await super().call(method, url, **kwargs)

    def observe(self, response: httpx.Response) -> None:
        match = _LIMIT_INFO.search(response.headers.get("sforce-limit-info", ""))
        if match:
            self.quota = Quota(int(match.group(1)), int(match.group(2)))

    def limit_signal(self, response: httpx.Response) -> str | None:
        if response.status_code == 403 and b"REQUEST_LIMIT_EXCEEDED" in response.content:
            # Exhausted daily budget: waiting minutes will not help. Below the limit the same code
            # means a burst (concurrency) limit: back off and retry.
            if self.quota is not None and self.quota.used >= self.quota.limit:
                return "quota"
            return "rate"
        return super().limit_signal(response)

    def near_budget(self) -> bool:
        quota = self.quota
        if quota is None or quota.limit <= 0:
            return False
        return quota.used >= quota.limit * (1.0 - self.config.budget_reserve)

    # ------------------------------------------------------------------ reads

    async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        spec = SPECS[stream]
        since = decode_cursor(cursor).get("since")
        soql = f"SELECT {FIELDS[stream]} FROM {SOBJECTS[stream]}"
        if since:
            start = parse_sf_datetime(since) - self.settings.lookback
            soql += f" WHERE SystemModstamp >= {soql_datetime(start)}"
        soql += " ORDER BY SystemModstamp, Id"
        headers = {}
        if self.settings.page_size:
            headers["Sforce-Query-Options"] = f"batchSize={self.settings.page_size}"
        if self.near_budget():
            yield self._partial(stream)
            return
        url: str | None = f"{self._data}/queryAll/?q={quote(soql, safe='')}"
        last = since
        while url is not None:
            answer = await self.call("GET", url, stream=stream, headers=headers)
            body = answer.body
            if not isinstance(body, dict) or not isinstance(body.get("records"), list):
                raise ProbeError(
                    "salesforce: query answer without records", system=SYSTEM, stream=stream
                )
            records = [r for r in body["records"] if isinstance(r, dict)]
            if stream == "opportunities":
                records = await self._with_won_times(records)
            frame, quarantine = to_canonical(spec, records)
            tail = next((t for r in reversed(records) if (t := _stamp_text(r)) is not None), None)
            if tail is not None:
                last = tail
            done = bool(body.get("done", True))
            next_url = body.get("nextRecordsUrl")
            url = None if done or not next_url else f"{self._instance_url}{next_url}"
            yield Page(
                system=SYSTEM,
                stream=stream,
                frames={spec.entity: frame},
                quarantine=tuple(quarantine),
                cursor=encode_cursor(since=last) if last else None,
                records_read=len(records),
            )
            if url is not None and self.near_budget():
                yield self._partial(stream)
                return

    async def _with_won_times(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Won opportunities with the moment they entered Closed Won (``_won_entered_at``).

        One ``OpportunityHistory`` query per ``HISTORY_IDS_PER_QUERY`` won deals of the page;
        the latest entry into the stage counts (a deal reopened and won again was won then).
        Where the history cannot be read (a 4xx: no access), the close date stands in.
        """
        won = [
            r["Id"]
            for r in records
            if r.get("IsWon") is True and isinstance(r.get("Id"), str) and _SOQL_ID.match(r["Id"])
        ]
        entered: dict[str, str] = {}
        for i in range(0, len(won), HISTORY_IDS_PER_QUERY):
            ids = ", ".join(f"'{x}'" for x in won[i : i + HISTORY_IDS_PER_QUERY])
            soql = (
                "SELECT OpportunityId, CreatedDate FROM OpportunityHistory "
                f"WHERE StageName = '{WON_STAGE}' AND OpportunityId IN ({ids})"
            )
            url: str | None = f"{self._data}/query/?q={quote(soql, safe='')}"
            while url is not None:
                try:
                    answer = await self.call("GET", url, stream="opportunities")
                except ProbeResponseError as exc:  # no access to the history: day precision
                    log.info("salesforce: no OpportunityHistory (%s); won_at from CloseDate", exc)
                    return records
                body = answer.body if isinstance(answer.body, dict) else {}
                for row in body.get("records") or ():
                    opp, at = row.get("OpportunityId"), row.get("CreatedDate")
                    if not isinstance(opp, str) or not isinstance(at, str):
                        continue
                    try:
                        moment = parse_sf_datetime(at)
                    except ValueError:
                        continue
                    if opp not in entered or moment > parse_sf_datetime(entered[opp]):
                        entered[opp] = at
                next_url = body.get("nextRecordsUrl")
                done = bool(body.get("done", True))
                url = None if done or not next_url else f"{self._instance_url}{next_url}"
        if not entered:
            return records
        return [
            {**r, "_won_entered_at": entered[r["Id"]]} if r.get("Id") in entered else r
            for r in records
        ]

    def _partial(self, stream: str) -> Page:
        quota = self.quota
        used = f"{quota.used}/{quota.limit}" if quota else "unknown"
        return Page(
            system=SYSTEM,
            stream=stream,
            partial=f"daily API budget reserve reached (api-usage {used})",
        )

    async def count(self, stream: str) -> SourceCount:
        self.check_stream(stream)
        soql = f"SELECT Id FROM {SOBJECTS[stream]}"
        answer = await self.call(
            "GET",
            f"{self._data}/query/?q={quote(soql, safe='')}",
            stream=stream,
            headers={"Sforce-Query-Options": "batchSize=200"},
        )
        total = (answer.body or {}).get("totalSize")
        if not isinstance(total, int):
            raise ProbeError("salesforce: count without totalSize", system=SYSTEM, stream=stream)
        if stream != "opportunities":
            return SourceCount(SYSTEM, stream, self.entities[stream], total)
        amounts = await self._amount_sums(stream)
        return SourceCount(
            SYSTEM,
            stream,
            self.entities[stream],
            total,
            amount_column="amount_minor" if amounts is not None else None,
            amount_minor=amounts,
        )

    async def _amount_sums(self, stream: str) -> dict[str, int] | None:
        """``SUM(Amount)`` per currency by an aggregate SOQL query; None where it is refused."""
        soql = "SELECT CurrencyIsoCode, SUM(Amount) total FROM Opportunity GROUP BY CurrencyIsoCode"
        try:
            answer = await self.call(
                "GET", f"{self._data}/query/?q={quote(soql, safe='')}", stream=stream
            )
        except ProbeResponseError as exc:
            log.info("salesforce: no aggregate sums (%s); counting records only", exc)
            return None
        sums: dict[str, int] = {}
        for row in (answer.body or {}).get("records") or []:
            code, value = row.get("CurrencyIsoCode"), row.get("total")
            if isinstance(code, str) and isinstance(value, int | float):
                sums[code.upper()] = to_minor(Decimal(str(value)), code)
        return sums

    async def refetch(self, stream: str, source_id: str) -> Page:
        self.check_stream(stream)
        fields = FIELDS[stream].replace(" ", "")
        answer = await self.call(
            "GET",
            f"{self._data}/sobjects/{SOBJECTS[stream]}/{quote(source_id, safe='')}",
            stream=stream,
            source_id=source_id,
            params={"fields": fields},
        )
        record = answer.body if isinstance(answer.body, dict) else {}
        if stream == "opportunities":
            [record] = await self._with_won_times([record])
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
            await self.call("GET", f"{self._data}/limits/")
        except ProbeError as exc:
            return Health(SYSTEM, False, time.monotonic() - started, str(exc), self.quota)
        return Health(SYSTEM, True, time.monotonic() - started, "ok", self.quota)

    # ------------------------------------------------------------------ writes

    async def upsert(
        self, sobject: str, external_id_field: str, external_id: str, values: dict[str, Any]
    ) -> WriteResult:
        """Upsert by external id (PATCH …/sobjects/X/Field/value): a retry updates, never duplicates."""
        answer = await self.call(
            "PATCH",
            f"{self._data}/sobjects/{sobject}/{external_id_field}/{quote(external_id, safe='')}",
            source_id=external_id,
            json=values,
            ok=(200, 201, 204),
        )
        body = answer.body if isinstance(answer.body, dict) else {}
        record_id = body.get("id")
        if not isinstance(record_id, str):
            raise ProbeNotFound(
                "salesforce: upsert answered without an id", system=SYSTEM, source_id=external_id
            )
        return WriteResult(
            SYSTEM, sobject, record_id, created=answer.status_code == 201, external_id=external_id
        )
