"""The error tree of o2c-monitor, rooted here because every other package may import `store`.

    O2CError                      anything o2c-monitor raises on purpose
    ├── ConfigError               settings missing or invalid (raised by `o2c` at start-up)
    └── StoreError                the database refused or failed an operation
        ├── StoreUnavailable      cannot connect (bad URL, server down, missing driver)
        ├── SchemaError           the schema is missing or not at the migration head
        └── BatchRejected         a batch violated a constraint; nothing of it was written

Errors carry the ids they are about (entity, source system, stream) as attributes so that callers
can report and quarantine without parsing messages. Driver exceptions are translated at the store
boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class O2CError(Exception):
    """Base class of every error o2c-monitor raises on purpose."""


class ConfigError(O2CError):
    """A setting is missing or invalid; the message says which and how to fix it."""


class StoreError(O2CError):
    """The store could not complete an operation."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened."""


class SchemaError(StoreError):
    """The database schema is missing or older than this code expects."""


class BatchRejected(StoreError):
    """A write batch failed as a whole: no record, cursor or quarantine row of it was kept."""

    def __init__(self, message: str, *, entity: str | None = None) -> None:
        super().__init__(message)
        self.entity = entity
