"""The console's service layer: plain functions taking a Store and a User, returning frames or
dataclasses; every role check happens here. Pages only call these and draw what they return.
"""

from __future__ import annotations

from dashboards.service._auth import (
    ACTIONS,
    PermissionDenied,
    Role,
    User,
    require,
    resolve_user,
    role_of,
)
from dashboards.service._breaks import (
    QUEUE_COLUMNS,
    BreakFilters,
    BulkOutcome,
    QueueTotal,
    accept,
    acknowledge,
    break_queue,
    filter_choices,
    prioritise,
    queue_clock,
    queue_csv,
    queue_total,
    read_register,
)
from dashboards.service._config import ConsoleConfig
from dashboards.service._deal import DealView, deal_view, deals_with_breaks, find_deal
from dashboards.service._format import money, money_column, money_short, when
from dashboards.service._kpis import TILES, TRENDS, Executive, KpiTile, executive
from dashboards.service._resyncs import (
    Resyncs,
    approve,
    break_resyncs,
    candidates,
    plan,
    reject,
    resyncs,
    trigger,
)
from dashboards.service._sources import (
    CollectorMetrics,
    QuarantinedRecord,
    Sources,
    decode_payload,
    parse_collector_metrics,
    quarantined,
    read_collector_metrics,
    sources,
)

__all__ = [
    "ACTIONS",
    "QUEUE_COLUMNS",
    "TILES",
    "TRENDS",
    "BreakFilters",
    "BulkOutcome",
    "CollectorMetrics",
    "ConsoleConfig",
    "DealView",
    "Executive",
    "KpiTile",
    "PermissionDenied",
    "QuarantinedRecord",
    "QueueTotal",
    "Resyncs",
    "Role",
    "Sources",
    "User",
    "accept",
    "acknowledge",
    "approve",
    "break_queue",
    "break_resyncs",
    "candidates",
    "deal_view",
    "deals_with_breaks",
    "decode_payload",
    "executive",
    "filter_choices",
    "find_deal",
    "money",
    "money_column",
    "money_short",
    "parse_collector_metrics",
    "plan",
    "prioritise",
    "quarantined",
    "queue_clock",
    "queue_csv",
    "queue_total",
    "read_collector_metrics",
    "read_register",
    "reject",
    "require",
    "resolve_user",
    "resyncs",
    "role_of",
    "sources",
    "trigger",
    "when",
]
