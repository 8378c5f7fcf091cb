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
    "SchemaError",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UpsertResult",
    "create_store_engine",
    "currency_exponent",
    "entity",
    "from_minor",
    "head_revision",
    "metadata",
    "normalize_currency",
    "require_head",
    "round_minor",
    "status",
    "to_minor",
    "upgrade",
]
