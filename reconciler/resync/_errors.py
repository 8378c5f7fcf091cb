"""The resync error: a repair that cannot be requested, approved or carried out, with its ids."""

from __future__ import annotations

from typing import Any

from reconciler._errors import ReconcileError


class ResyncError(ReconcileError):
    """A resync refused or impossible (manual break, unknown request, missing data, self-approval).

    Carries ``break_id`` and ``request_id`` where known. Vendor failures stay ``ProbeError``s.
    """

    def __init__(self, message: str, *, request_id: int | None = None, **ids: Any) -> None:
        super().__init__(message, **ids)
        self.request_id = request_id
