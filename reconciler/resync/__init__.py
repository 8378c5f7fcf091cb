"""Self-healing resyncs: policy-driven, idempotent repairs of breaks through the vendors' APIs (issue 7).

Public surface::

    request_resync(store, break_id=..., requested_by=...)   # a request row (idempotent)
    approve_request(store, request_id, approved_by=...)      # an approval row; then it runs
    plan_resync(store)                                       # dry run: the exact API calls
    await run_resync_cycle(store, probes_by_system, config=ResyncConfig(...))
    list_requests(store), read_audit(store, break_id=...)    # polars frames

The remediation catalogue (``CATALOGUE``: break type -> action), the policy (``ResyncPolicy``),
the per-system circuit breaker and the append-only audit are described in their modules.
"""

from __future__ import annotations

from reconciler.resync._catalogue import (
    ACTIONS,
    CATALOGUE,
    Action,
    ApiCall,
    BreakRef,
    CreateProject,
    PushInvoiceToBilling,
    RefetchRecords,
    Repair,
    UpsertErpCustomer,
    idempotency_key,
)
from reconciler.resync._errors import ResyncError
from reconciler.resync._executor import CycleSummary, Outcome, ResyncConfig, run_resync_cycle
from reconciler.resync._metrics import ResyncCollector
from reconciler.resync._policy import MODES, ResyncPolicy
from reconciler.resync._service import (
    PlannedAction,
    approve_request,
    enqueue_due,
    list_requests,
    mode_of,
    plan_resync,
    read_audit,
    reject_request,
    request_resync,
)

__all__ = [
    "ACTIONS",
    "CATALOGUE",
    "MODES",
    "Action",
    "ApiCall",
    "BreakRef",
    "CreateProject",
    "CycleSummary",
    "Outcome",
    "PlannedAction",
    "PushInvoiceToBilling",
    "RefetchRecords",
    "Repair",
    "ResyncCollector",
    "ResyncConfig",
    "ResyncError",
    "ResyncPolicy",
    "UpsertErpCustomer",
    "approve_request",
    "enqueue_due",
    "idempotency_key",
    "list_requests",
    "mode_of",
    "plan_resync",
    "read_audit",
    "reject_request",
    "request_resync",
    "run_resync_cycle",
]
