"""Errors of the reconciler: a ReconcileError carries the run or break it is about."""

from __future__ import annotations

from store import O2CError


class ReconcileError(O2CError):
    """A reconcile run or a break operation could not be completed."""

    def __init__(
        self, message: str, *, run_id: int | None = None, break_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.break_id = break_id
