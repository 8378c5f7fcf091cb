"""NetSuite probe: OAuth 2.0 M2M token (signed JWT), SuiteQL in keyset windows, eid: upserts.

Reads customers, invoices (``CustInvc``), payments (``CustPymt``) and payment applications
(``NextTransactionLineLink``) with ``SELECT … WHERE lastmodifieddate >= TO_TIMESTAMP(T) ORDER BY
lastmodifieddate, id`` (``id`` makes the order unique). Each request opens a new window at the
last second served, at offset 0, instead of walking ``offset``:

* offset paging over a changing result skips a record whenever an earlier one is modified (it
  moves to the end and everything shifts up one place); a window restarted at the last stamp
  cannot skip, and the re-served boundary second is dropped by id;
* SuiteQL answers at most 100,000 results per query; every window query is well under the cap
  however large the backfill. Only when a whole page falls in one second does the probe step
  ``offset`` inside that window (and a second with more than 100,000 changes is an error).

Timestamps come back in the user's date format unless asked for; the probe selects
``TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS')`` (the account's time zone is taken as UTC).
Currency, subsidiary and job columns are internal ids; they are resolved with small cached
look-up queries (one per page for ids not seen before).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from probes._base import (
    Health,
    NetSuiteConfig,
    Page,
    ProbeAuthError,
    ProbeError,
    ProbeNotFound,
    ProbeResponseError,
    SourceCount,
    WriteResult,
    decode_cursor,
    encode_cursor,
)
from probes._http import HttpProbe
from probes._mapping import Col, Spec, at_midnight, to_canonical
from store import to_minor

SYSTEM = "netsuite"
log = logging.getLogger(__name__)
# stream -> (NetSuite column summed by the completeness check, canonical column it becomes)
_SUMMED = {
    "invoices": ("foreigntotal", "total_minor"),
    "payments": ("foreigntotal", "amount_minor"),
}
MAX_LIMIT = 1000
RESULT_CAP = 100_000
STAMP = "YYYY-MM-DD HH24:MI:SS"
_STAMP_PY = "%Y-%m-%d %H:%M:%S"

_INVOICE_STATUS = {"A": "open", "B": "paid", "V": "void", "D": "pending_approval"}
_PAYMENT_STATUS = {"A": "unapproved", "B": "not_deposited", "C": "deposited"}


def _modified(record: dict[str, Any]) -> Any:
    value = record.get("modified")
    return f"{value.replace(' ', 'T')}+00:00" if isinstance(value, str) else value


_ID = Col("id", "id", "str", required=True)
_MODIFIED = Col("modified", _modified, "datetime", required=True)
_CURRENCY = Col("currency", "_currency", "currency", required=True)

SPECS: dict[str, Spec] = {
    "accounts": Spec(
        SYSTEM,
        "accounts",
        "accounts",
        id=_ID,
        modified=_MODIFIED,
        columns=(
            Col("name", "companyname", "str"),
            Col("crm_account_id", "externalid", "str"),
            Col("erp_customer_id", "id", "str"),
            Col("legal_entity", "_subsidiary", "str"),
            _CURRENCY,
        ),
    ),
    "invoices": Spec(
        SYSTEM,
        "invoices",
        "invoices",
        id=_ID,
        modified=_MODIFIED,
        columns=(
            Col("number", "tranid", "str"),
            Col("customer_ref", "entity", "str", required=True),
            Col("project_ref", "_project", "str"),
            Col("psa_invoice_ref", "externalid", "str"),
            Col("total_minor", "foreigntotal", "money", required=True),
            Col("amount_remaining_minor", "foreignamountunpaid", "money"),
            _CURRENCY,
            Col(
                "status",
                lambda r: _INVOICE_STATUS.get(str(r.get("status")), r.get("status")),
                "str",
                required=True,
            ),
            Col("issued_on", "trandate", "us_date"),
            Col("due_on", "duedate", "us_date"),
        ),
    ),
    "payments": Spec(
        SYSTEM,
        "payments",
        "payments",
        id=_ID,
        modified=_MODIFIED,
        columns=(
            Col("customer_ref", "entity", "str", required=True),
            Col("amount_minor", "foreigntotal", "money", required=True),
            Col("unapplied_minor", "foreignpaymentamountunused", "money"),
            _CURRENCY,
            Col(
                "status",
                lambda r: _PAYMENT_STATUS.get(str(r.get("status")), r.get("status")),
                "str",
                required=True,
            ),
            Col("received_at", lambda r: at_midnight(r.get("trandate")), "ts"),
            Col("reference", "memo", "str"),
        ),
    ),
    "payment_applications": Spec(
        SYSTEM,
        "payment_applications",
        "payment_applications",
        id=_ID,
        modified=_MODIFIED,
        columns=(
            Col("payment_ref", "nextdoc", "str", required=True),
            Col("invoice_ref", "previousdoc", "str", required=True),
            Col("amount_minor", "foreignamount", "money", required=True),
            _CURRENCY,
            Col("applied_at", lambda r: at_midnight(r.get("linkdate")), "ts"),
        ),
    ),
}

_TRANSACTION = (
    "id, tranid, type, entity, job, externalid, status, trandate, duedate, currency, "
    "foreigntotal, foreignamountunpaid, foreignpaymentamountused, foreignpaymentamountunused, memo"
)
# stream -> (table, selected columns, extra condition)
QUERIES: dict[str, tuple[str, str, str]] = {
    "accounts": (
        "customer",
        "id, entityid, companyname, externalid, subsidiary, currency, isinactive",
        "",
    ),
    "invoices": ("transaction", _TRANSACTION, "type = 'CustInvc'"),
    "payments": ("transaction", _TRANSACTION, "type = 'CustPymt'"),
    "payment_applications": (
        "nexttransactionlinelink",
        "id, previousdoc, previoustype, nextdoc, nexttype, linktype, foreignamount, linkdate",
        "",
    ),
}


def suiteql_timestamp(value: datetime) -> str:
    return f"TO_TIMESTAMP('{value.astimezone(UTC).strftime(_STAMP_PY)}', '{STAMP}')"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class NetSuiteProbe(HttpProbe):
    """NetSuite ERP: customers, invoices, payments and payment applications."""

    system: ClassVar[str] = SYSTEM
    streams: ClassVar[tuple[str, ...]] = (
        "accounts",
        "invoices",
        "payments",
        "payment_applications",
    )
    entities: ClassVar[dict[str, str]] = {s: s for s in streams}
    config: NetSuiteConfig

    def __init__(self, client: httpx.AsyncClient, config: NetSuiteConfig, **kwargs: Any) -> None:
        super().__init__(client, config, **kwargs)
        self._base = config.base_url.rstrip("/")
        self._token: str | None = None
        self._expires = 0.0
        self._token_lock = asyncio.Lock()
        self._lookups: dict[tuple[str, str], dict[str, str | None]] = {}

    # ------------------------------------------------------------------ auth

    @property
    def _token_url(self) -> str:
        return f"{self._base}/auth/oauth2/v1/token"

    def _assertion(self) -> str:
        """The client assertion: a JWT signed with our key (PS256 for RSA, ES256 for EC)."""
        try:
            key = serialization.load_pem_private_key(
                self.config.private_key_pem.encode(), password=None
            )
        except (ValueError, TypeError) as exc:
            raise ProbeAuthError(
                "netsuite: the private key is not a PEM key", system=SYSTEM
            ) from exc
        alg = "PS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        now = int(time.time())
        header = {"typ": "JWT", "alg": alg, "kid": self.config.certificate_id}
        claims = {
            "iss": self.config.client_id,
            "scope": ["rest_webservices"],
            "aud": self._token_url,
            "iat": now,
            "exp": now + 3000,
        }
        signing_input = f"{_b64(json.dumps(header))}.{_b64(json.dumps(claims))}".encode()
        if isinstance(key, rsa.RSAPrivateKey):
            signature = key.sign(
                signing_input,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            der = key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
            r, s = utils.decode_dss_signature(der)
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            raise ProbeAuthError("netsuite: the key must be RSA or EC", system=SYSTEM)
        return f"{signing_input.decode()}.{_b64(signature)}"

    async def auth_headers(self) -> dict[str, str]:
        if self._token is None or time.monotonic() >= self._expires:
            await self._fetch_token(self._token)
        return {"Authorization": f"Bearer {self._token}"}

    async def refresh_token(self) -> bool:
        await self._fetch_token(self._token)
        return True

    async def _fetch_token(self, stale: str | None) -> None:
        async with self._token_lock:
            if (
                self._token is not None
                and self._token != stale
                and time.monotonic() < self._expires
            ):
                return
            answer = await self.call(
                "POST",
                self._token_url,
                auth=False,
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": self._assertion(),
                },
            )
            body = answer.body or {}
            token = body.get("access_token")
            if not isinstance(token, str):
                raise ProbeAuthError("netsuite: token answer without access_token", system=SYSTEM)
            try:
                ttl = float(body.get("expires_in") or 3600)
            except (TypeError, ValueError):
                ttl = 3600.0
            self._token = token
            # Renew a minute early so that no request leaves with a token about to expire.
            self._expires = time.monotonic() + max(0.0, ttl - 60)

    # ------------------------------------------------------------------ SuiteQL

    async def suiteql(
        self, query: str, *, limit: int = MAX_LIMIT, offset: int = 0, stream: str | None = None
    ) -> dict[str, Any]:
        answer = await self.call(
            "POST",
            f"{self._base}/query/v1/suiteql",
            stream=stream,
            params={"limit": str(limit), "offset": str(offset)},
            headers={"Prefer": "transient"},
            json={"q": query},
        )
        body = answer.body
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise ProbeError("netsuite: SuiteQL answer without items", system=SYSTEM, stream=stream)
        return body

    async def lookup(self, table: str, column: str, ids: Iterable[Any]) -> dict[str, str | None]:
        """``column`` of ``table`` rows by id, cached; ids not found map to None."""
        cache = self._lookups.setdefault((table, column), {})
        wanted = sorted({str(i) for i in ids if isinstance(i, str | int)} - set(cache))
        for start in range(0, len(wanted), MAX_LIMIT):
            chunk = wanted[start : start + MAX_LIMIT]
            body = await self.suiteql(
                f"SELECT id, {column} FROM {table} WHERE id IN ({', '.join(map(_quote, chunk))})"
            )
            found = {str(item.get("id")): item.get(column) for item in body["items"]}
            for rid in chunk:
                cache[rid] = found.get(rid)
        return cache

    async def _enrich(self, stream: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        currencies = await self.lookup("currency", "symbol", [i.get("currency") for i in items])
        if stream == "accounts":
            names = await self.lookup("subsidiary", "name", [i.get("subsidiary") for i in items])
            return [
                {
                    **i,
                    "_currency": currencies.get(str(i.get("currency"))),
                    "_subsidiary": names.get(str(i.get("subsidiary"))),
                }
                for i in items
            ]
        if stream == "invoices":
            jobs = await self.lookup("job", "externalid", [i.get("job") for i in items])
            return [
                {
                    **i,
                    "_currency": currencies.get(str(i.get("currency"))),
                    "_project": jobs.get(str(i.get("job"))),
                }
                for i in items
            ]
        if stream == "payment_applications":
            # A link has no currency of its own: it is the invoice's (the payment's is the same).
            docs = await self.lookup(
                "transaction", "currency", [i.get("previousdoc") for i in items]
            )
            codes = await self.lookup("currency", "symbol", [c for c in docs.values() if c])
            return [
                {**i, "_currency": codes.get(str(docs.get(str(i.get("previousdoc")))))}
                for i in items
            ]
        return [{**i, "_currency": currencies.get(str(i.get("currency")))} for i in items]

    def _query(self, stream: str, since: datetime | None, where_id: str | None = None) -> str:
        table, columns, condition = QUERIES[stream]
        conditions = [c for c in (condition,) if c]
        if since is not None:
            conditions.append(f"lastmodifieddate >= {suiteql_timestamp(since)}")
        if where_id is not None:
            conditions.append(f"id = {_quote(where_id)}")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return (
            f"SELECT {columns}, TO_CHAR(lastmodifieddate, '{STAMP}') AS modified "
            f"FROM {table}{where} ORDER BY lastmodifieddate, id"
        )

    # ------------------------------------------------------------------ reads

    async def pages(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:
        spec = SPECS[stream]
        limit = min(self.settings.page_size or MAX_LIMIT, MAX_LIMIT)
        since = decode_cursor(cursor).get("since")
        window = (
            datetime.strptime(since, _STAMP_PY).replace(tzinfo=UTC) - self.settings.lookback
            if since
            else None
        )
        last = since
        offset = 0
        pass_fresh = 0
        served: set[tuple[str, str]] = set()
        while True:
            body = await self.suiteql(
                self._query(stream, window), limit=limit, offset=offset, stream=stream
            )
            items = [i for i in body["items"] if isinstance(i, dict)]
            fresh = [i for i in items if (str(i.get("id")), str(i.get("modified"))) not in served]
            served.update((str(i.get("id")), str(i.get("modified"))) for i in fresh)
            tail = next((t for i in reversed(items) if (t := _stamp_text(i)) is not None), None)
            if tail is not None:
                last = tail
            if fresh:
                frame, quarantine = to_canonical(spec, await self._enrich(stream, fresh))
                yield Page(
                    system=SYSTEM,
                    stream=stream,
                    frames={spec.entity: frame},
                    quarantine=tuple(quarantine),
                    cursor=encode_cursor(since=last) if last else None,
                    records_read=len(fresh),
                )
            pass_fresh += len(fresh)
            finished = not body.get("hasMore") or len(items) < limit
            next_window = datetime.strptime(tail, _STAMP_PY).replace(tzinfo=UTC) if tail else None
            moves_on = next_window is not None and (window is None or next_window > window)
            if (finished or moves_on) and offset > 0 and pass_fresh:
                # Offset steps inside one second can skip a record modified meanwhile: pass
                # over that second again until a pass brings nothing new.
                offset, pass_fresh = 0, 0
                continue
            if finished:
                break
            if moves_on:
                window, offset, pass_fresh = next_window, 0, 0
            else:
                # A whole page inside one second: step through that second by offset.
                offset += limit
                if offset >= RESULT_CAP:
                    raise ProbeError(
                        f"netsuite: more than {RESULT_CAP} changes within one second",
                        system=SYSTEM,
                        stream=stream,
                    )
        if last is not None and not served:
            yield Page(system=SYSTEM, stream=stream, cursor=encode_cursor(since=last))

    async def count(self, stream: str) -> SourceCount:
        self.check_stream(stream)
        table, _, condition = QUERIES[stream]
        total = await self._count(table, condition, None, None)
        column = _SUMMED.get(stream)
        amounts = await self._amount_sums(stream, column[0]) if column else None
        return SourceCount(
            SYSTEM,
            stream,
            self.entities[stream],
            total,
            amount_column=column[1] if column and amounts is not None else None,
            amount_minor=amounts,
        )

    async def _amount_sums(self, stream: str, column: str) -> dict[str, int] | None:
        """``SUM(column)`` per currency by an aggregate SuiteQL query; None where it is refused."""
        table, _, condition = QUERIES[stream]
        where = f" WHERE {condition}" if condition else ""
        try:
            body = await self.suiteql(
                f"SELECT currency, SUM({column}) AS total FROM {table}{where} GROUP BY currency",
                stream=stream,
            )
        except ProbeResponseError as exc:
            log.info("netsuite: no aggregate sums (%s); counting records only", exc)
            return None
        codes = await self.lookup("currency", "symbol", [i.get("currency") for i in body["items"]])
        sums: dict[str, int] = {}
        for item in body["items"]:
            code = codes.get(str(item.get("currency")))
            if code and item.get("total") is not None:
                sums[code] = sums.get(code, 0) + to_minor(Decimal(str(item["total"])), code)
        return sums

    async def _count(
        self, table: str, condition: str, low: datetime | None, high: datetime | None
    ) -> int:
        conditions = [c for c in (condition,) if c]
        if low is not None:
            conditions.append(f"lastmodifieddate >= {suiteql_timestamp(low)}")
        if high is not None:
            conditions.append(f"lastmodifieddate < {suiteql_timestamp(high)}")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        body = await self.suiteql(f"SELECT id FROM {table}{where}", limit=1)
        total = body.get("totalResults")
        if not isinstance(total, int):
            raise ProbeError("netsuite: SuiteQL answer without totalResults", system=SYSTEM)
        if total < RESULT_CAP:
            return total
        # Capped: split the time range and count each half.
        low = low or datetime(1990, 1, 1, tzinfo=UTC)
        high = high or datetime.now(UTC) + timedelta(days=3650)
        if high - low <= timedelta(seconds=1):
            raise ProbeError(f"netsuite: over {RESULT_CAP} rows in one second", system=SYSTEM)
        middle = low + (high - low) / 2
        return await self._count(table, condition, low, middle) + await self._count(
            table, condition, middle, high
        )

    async def refetch(self, stream: str, source_id: str) -> Page:
        self.check_stream(stream)
        body = await self.suiteql(self._query(stream, None, where_id=source_id), stream=stream)
        items = [i for i in body["items"] if isinstance(i, dict)]
        if not items:
            raise ProbeNotFound(
                f"netsuite: no {stream} record {source_id}",
                system=SYSTEM,
                stream=stream,
                source_id=source_id,
            )
        frame, quarantine = to_canonical(SPECS[stream], await self._enrich(stream, items))
        return Page(
            system=SYSTEM,
            stream=stream,
            frames={SPECS[stream].entity: frame},
            quarantine=tuple(quarantine),
            records_read=len(items),
        )

    async def health(self) -> Health:
        started = time.monotonic()
        try:
            await self.suiteql("SELECT id FROM currency", limit=1)
        except ProbeError as exc:
            return Health(SYSTEM, False, time.monotonic() - started, str(exc))
        return Health(SYSTEM, True, time.monotonic() - started, "ok")

    # ------------------------------------------------------------------ writes

    async def upsert_customer(
        self,
        external_id: str,
        *,
        company_name: str,
        subsidiary_id: str,
        currency_id: str,
        email: str | None = None,
        terms_id: str | None = None,
    ) -> WriteResult:
        """Create or update the ERP customer keyed by our external id (the CRM account id).

        ``PUT /record/v1/customer/eid:<id>`` is an upsert: a retry after a lost answer updates
        the customer it created, it never creates a second one.
        """
        before = await self.suiteql(
            f"SELECT id FROM customer WHERE externalid = {_quote(external_id)}", limit=1
        )
        body: dict[str, Any] = {
            "companyName": company_name,
            "subsidiary": {"id": subsidiary_id},
            "currency": {"id": currency_id},
        }
        if email is not None:
            body["email"] = email
        if terms_id is not None:
            body["terms"] = {"id": terms_id}
        answer = await self.call(
            "PUT",
            f"{self._base}/record/v1/customer/eid:{external_id}",
            source_id=external_id,
            json=body,
            ok=(200, 204),
        )
        location = answer.headers.get("location", "")
        record_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not record_id:
            raise ProbeError("netsuite: upsert answered without Location", system=SYSTEM)
        return WriteResult(
            SYSTEM, "customer", record_id, created=not before["items"], external_id=external_id
        )


def _stamp_text(item: dict[str, Any]) -> str | None:
    """The selected ``modified`` stamp when it is readable (a quarantined row's may not be)."""
    text = item.get("modified")
    if not isinstance(text, str):
        return None
    try:
        datetime.strptime(text, _STAMP_PY)
    except ValueError:
        return None
    return text


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
