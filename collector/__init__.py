"""Collector: schedules probe cycles and writes each page into the store with its cursor (issue 4).

The public surface is this module. ``run_cycle`` is one (system, stream) cycle; ``Collector`` runs
every enabled stream once or on an APScheduler 3.x schedule, with per-stream ownership across
processes (``ownership_for``: PostgreSQL advisory locks, or one process per SQLite file), a
completeness check per stream, and the metrics of ``collector.metrics``.
"""

from __future__ import annotations

from collector._completeness import (
    CompletenessFinding,
    check_stream,
    save_finding,
    store_totals,
)
from collector._config import CollectorConfig
from collector._cycle import (
    FAILED,
    PARTIAL,
    SKIPPED,
    SUCCEEDED,
    CycleResult,
    ProgressCallback,
    run_cycle,
)
from collector._errors import ERROR_KINDS, CollectorError, OwnershipLost, StoreBusy, error_kind
from collector._ownership import (
    Lease,
    Ownership,
    PostgresOwnership,
    SQLiteOwnership,
    ownership_for,
    stream_lock_key,
)
from collector._repository import last_successes
from collector._service import Collector, SystemProbe
from collector.metrics import CollectorMetrics

__all__ = [
    "ERROR_KINDS",
    "FAILED",
    "PARTIAL",
    "SKIPPED",
    "SUCCEEDED",
    "Collector",
    "CollectorConfig",
    "CollectorError",
    "CollectorMetrics",
    "CompletenessFinding",
    "CycleResult",
    "Lease",
    "Ownership",
    "OwnershipLost",
    "PostgresOwnership",
    "ProgressCallback",
    "SQLiteOwnership",
    "StoreBusy",
    "SystemProbe",
    "check_stream",
    "error_kind",
    "last_successes",
    "ownership_for",
    "run_cycle",
    "save_finding",
    "store_totals",
    "stream_lock_key",
]
