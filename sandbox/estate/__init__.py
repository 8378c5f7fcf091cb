"""The simulated consulting firm behind the sandbox APIs: vendor frames, ground truth, clock."""

from __future__ import annotations

from sandbox.estate._estate import Estate
from sandbox.estate.schema import (
    BREAK_TYPES,
    DEFAULT_DEFECT_RATES,
    GROUND_TRUTH_SCHEMA,
    ID_COLUMN,
    MODIFIED_COLUMN,
    SCHEMAS,
    VENDORS,
    EstateInterface,
)

__all__ = [
    "BREAK_TYPES",
    "DEFAULT_DEFECT_RATES",
    "GROUND_TRUTH_SCHEMA",
    "ID_COLUMN",
    "MODIFIED_COLUMN",
    "SCHEMAS",
    "VENDORS",
    "Estate",
    "EstateInterface",
]
