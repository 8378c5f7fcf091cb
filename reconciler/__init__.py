"""Reconciler: links each deal end to end with polars, finds breaks, computes KPIs (issue 5).

Public surface: build a ``ReconcileConfig``; ``reconcile(Canonical, as_of, config)`` is the pure
engine (no store); ``run_reconcile(store, as_of=..., config=...)`` runs it against the store and
persists the break lifecycle and the KPI snapshot; ``accept_break`` is the operator's action.
Break rules are small classes registered in ``RULES``.
"""

from __future__ import annotations

from reconciler._breaks import AGEING_BUCKETS, BREAK_SCHEMA, break_id
from reconciler._canonical import Canonical, FrameCache
from reconciler._chains import CHAIN_SCHEMA, CHAIN_STAGES
from reconciler._config import (
    BREAK_TYPES,
    Calendar,
    ReconcileConfig,
    Systems,
)
from reconciler._context import RuleContext
from reconciler._engine import ReconcileResult, reconcile
from reconciler._errors import ReconcileError
from reconciler._kpis import AR_BUCKETS, KPI_SCHEMA, countback_dso
from reconciler._links import (
    BOTH,
    LEFT_ONLY,
    RIGHT_ONLY,
    SIDE,
    Cardinality,
    LinkResult,
    link,
    suggest_links,
)
from reconciler._service import (
    ACTIVE_STATUSES,
    STATUSES,
    LifecyclePlan,
    RunReport,
    accept_break,
    plan_lifecycle,
    run_reconcile,
)
from reconciler.rules import RULES, BreakRule

__all__ = [
    "ACTIVE_STATUSES",
    "AGEING_BUCKETS",
    "AR_BUCKETS",
    "BOTH",
    "BREAK_SCHEMA",
    "BREAK_TYPES",
    "CHAIN_SCHEMA",
    "CHAIN_STAGES",
    "KPI_SCHEMA",
    "LEFT_ONLY",
    "RIGHT_ONLY",
    "RULES",
    "SIDE",
    "STATUSES",
    "BreakRule",
    "Calendar",
    "Canonical",
    "Cardinality",
    "FrameCache",
    "LifecyclePlan",
    "LinkResult",
    "ReconcileConfig",
    "ReconcileError",
    "ReconcileResult",
    "RuleContext",
    "RunReport",
    "Systems",
    "accept_break",
    "break_id",
    "countback_dso",
    "link",
    "plan_lifecycle",
    "reconcile",
    "run_reconcile",
    "suggest_links",
]
