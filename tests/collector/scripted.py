"""A probe that plays a script of pages and failures: the cycle's contract without a vendor.

It implements the real ``probes.Probe`` interface (the collector accepts any Probe), so nothing
of ours is patched; the end-to-end tests use the vendor probes against the sandbox instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import httpx
import polars as pl

from probes import Health, Page, Probe, SourceCount

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def accounts(ids: Sequence[int], *, modified: datetime = T0, currency: str = "USD") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source_system": ["crm"] * len(ids),
            "source_id": [f"acc-{i}" for i in ids],
            "source_modified_at": [modified + timedelta(seconds=i) for i in ids],
            "name": [f"Account {i}" for i in ids],
            "currency": [currency] * len(ids),
        }
    )


def page(ids: Sequence[int], *, cursor: str | None = None, **kwargs: object) -> Page:
    return Page(
        "crm",
        "accounts",
        frames={"accounts": accounts(ids)},
        cursor=cursor if cursor is not None else f"c{max(ids)}",
        records_read=len(ids),
        **kwargs,  # type: ignore[arg-type]
    )


class Boom(Exception):
    """A failure nobody anticipated (the cycle must still end and record it)."""


class ScriptedProbe(Probe):
    """Yields the scripted items in order; an exception in the script is raised at that point."""

    system: ClassVar[str] = "crm"
    streams: ClassVar[tuple[str, ...]] = ("accounts",)
    entities: ClassVar[dict[str, str]] = {"accounts": "accounts"}

    def __init__(
        self,
        script: Sequence[Page | BaseException | float],
        count: int | SourceCount = 0,
    ) -> None:
        super().__init__(httpx.AsyncClient(transport=httpx.MockTransport(_unused)), None)
        self.script = list(script)
        self.cursors_seen: list[str | None] = []
        self._count = count

    async def read(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:  # type: ignore[override]
        self.check_stream(stream)
        self.cursors_seen.append(cursor)
        for item in self.script:
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, float):
                await asyncio.sleep(item)
                continue
            yield item

    async def count(self, stream: str) -> SourceCount:
        """What the script says the source holds (a bare number: that many accounts)."""
        if isinstance(self._count, SourceCount):
            return self._count
        return SourceCount("crm", stream, "accounts", self._count)

    async def health(self) -> Health:
        return Health("crm", True, 0.0)

    async def refetch(self, stream: str, source_id: str) -> Page:
        raise NotImplementedError


def _unused(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the scripted probe made a request: {request.url}")
