"""Canonical model and persistence of o2c-monitor: the contract between probes and reconciler.

The store imports nothing else of o2c-monitor. Its public surface is this module; the
underscored modules behind it are private.
"""

from __future__ import annotations

from store._errors import (
    BatchRejected,
    ConfigError,
    O2CError,
    SchemaError,
    StoreError,
    StoreUnavailable,
)
from store._migrate import MigrationStatus, head_revision, require_head, status, upgrade
from store._money import currency_exponent, from_minor, normalize_currency, round_minor, to_minor
from store._reconcile import (
    BREAK_COLUMNS,
    ReconcileRun,
    finish_reconcile_run,
    insert_break_transitions,
    insert_kpi_snapshot,
    last_reconcile_as_of,
    last_written,
    list_reconcile_runs,
    lock_break_register,
    read_break_register,
    read_break_transitions,
    read_canonical,
    read_kpi_snapshots,
    read_probe_health,
    set_break_acceptance,
    start_reconcile_run,
    write_break_register,
)
from store._repository import (
    ProbeRun,
    QuarantineItem,
    QuarantineRecord,
)
from store._schema import (
    ACCOUNT,
    ENTITIES,
    INVOICE,
    MILESTONE,
    OPPORTUNITY,
    PAYMENT,
    PAYMENT_APPLICATION,
    PROJECT,
    TIME_ENTRY,
    Entity,
    Field,
    metadata,
)
from store._store import (
    CursorAdvance,
    IngestBatch,
    IngestResult,
    Store,
    create_store_engine,
    entity,
)
from store._upsert import UpsertResult

__all__ = [
    "ACCOUNT",
    "BREAK_COLUMNS",
    "ENTITIES",
    "INVOICE",
    "MILESTONE",
    "OPPORTUNITY",
    "PAYMENT",
    "PAYMENT_APPLICATION",
    "PROJECT",
    "TIME_ENTRY",
    "BatchRejected",
    "ConfigError",
    "CursorAdvance",
    "Entity",
    "Field",
    "IngestBatch",
    "IngestResult",
    "MigrationStatus",
    "O2CError",
    "ProbeRun",
    "QuarantineItem",
    "QuarantineRecord",
    "ReconcileRun",
    "SchemaError",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UpsertResult",
    "create_store_engine",
    "currency_exponent",
    "entity",
    "finish_reconcile_run",
    "from_minor",
    "head_revision",
    "insert_break_transitions",
    "insert_kpi_snapshot",
    "last_reconcile_as_of",
    "last_written",
    "list_reconcile_runs",
    "lock_break_register",
    "metadata",
    "normalize_currency",
    "read_break_register",
    "read_break_transitions",
    "read_canonical",
    "read_kpi_snapshots",
    "read_probe_health",
    "require_head",
    "round_minor",
    "set_break_acceptance",
    "start_reconcile_run",
    "status",
    "to_minor",
    "upgrade",
    "write_break_register",
]
