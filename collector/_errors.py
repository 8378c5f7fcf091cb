"""The collector's errors and the bounded set of error kinds its metrics and probe runs report.

    O2CError (store)
    └── CollectorError              the collector cannot run as configured
        ├── StoreBusy               another collector process owns this SQLite store
        └── OwnershipLost           a stream's PostgreSQL lock went away mid-cycle

Cycle failures caused by a vendor or the database are not raised out of a cycle: they end the
cycle as ``failed`` with an error *kind* (a short, bounded word: a metric label) and a message.
"""

from __future__ import annotations

from probes import (
    ProbeAuthError,
    ProbeConflict,
    ProbeError,
    ProbeMalformedPage,
    ProbeNotFound,
    ProbeQuotaExhausted,
    ProbeRateLimited,
    ProbeResponseError,
    ProbeTimeout,
    ProbeUnavailable,
)
from store import BatchRejected, O2CError, StoreError, StoreUnavailable


class CollectorError(O2CError):
    """The collector cannot do what it was asked."""


class StoreBusy(CollectorError):
    """Another collector process holds this store (SQLite admits one collector process)."""


class OwnershipLost(CollectorError):
    """The lock that made this process the owner of a stream is gone; stop before writing."""

    def __init__(self, message: str, *, system: str, stream: str) -> None:
        super().__init__(message)
        self.system = system
        self.stream = stream


# Exception class -> kind, looked up along the exception's MRO so that a subclass of a known error
# (a vendor-specific probe error) gets its parent's kind.
_KINDS: dict[type[BaseException], str] = {
    ProbeTimeout: "timeout",
    ProbeUnavailable: "unavailable",
    ProbeRateLimited: "rate_limit",
    ProbeQuotaExhausted: "quota",
    ProbeAuthError: "auth",
    ProbeMalformedPage: "malformed",
    ProbeNotFound: "not_found",
    ProbeConflict: "conflict",
    ProbeResponseError: "response",
    ProbeError: "probe",
    OwnershipLost: "ownership_lost",
    StoreUnavailable: "store_unavailable",
    BatchRejected: "store_rejected",
    StoreError: "store",
    TimeoutError: "cycle_timeout",
}

ERROR_KINDS: tuple[str, ...] = (*dict.fromkeys(_KINDS.values()), "cancelled", "internal")
"""Every kind a cycle may report (the ``kind`` label of ``o2c_probe_errors_total``)."""


def error_kind(exc: BaseException) -> str:
    """The bounded kind of an exception, for metrics and the probe run's error column."""
    for cls in type(exc).__mro__:
        kind = _KINDS.get(cls)
        if kind is not None:
            return kind
    return "internal"
