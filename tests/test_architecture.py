"""The layout rules of ARCHITECTURE.md, checked on the source: who may import whom, what is public."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import store

ROOT = Path(__file__).resolve().parents[1]
OURS = {
    "o2c",
    "store",
    "probes",
    "collector",
    "reconciler",
    "alerts",
    "dashboards",
    "sandbox",
    "grafana",
}

# What each package may import of ours. The store is the foundation; the sandbox stands in for the
# outside world and must stay independent of the code it tests; `o2c` sits on top of everything.
ALLOWED: dict[str, set[str]] = {
    "store": set(),
    "sandbox": set(),
    "probes": {"store"},
    "collector": {"store", "probes"},
    # reconciler/resync plans and runs repairs through the probes' write operations
    "reconciler": {"store", "probes"},
    "alerts": {"store", "reconciler"},
    "dashboards": {"store", "reconciler", "alerts"},
    # dashboards as code; the metric names they use are checked against the catalogues by tests
    "grafana": set(),
}


def imported_packages(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return (found & OURS) - {package}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down_the_architecture(package: str) -> None:
    assert imported_packages(package) <= ALLOWED[package]


def test_store_public_surface_is_pinned() -> None:
    assert sorted(store.__all__) == sorted(
        [
            "ACCOUNT", "ENTITIES", "INVOICE", "MILESTONE", "OPPORTUNITY", "PAYMENT",
            "PAYMENT_APPLICATION", "PROJECT", "TIME_ENTRY", "BatchRejected", "ConfigError",
            "CursorAdvance", "Entity", "Field", "IngestBatch", "IngestResult", "MigrationStatus",
            "O2CError", "ProbeRun", "QuarantineItem", "QuarantineRecord", "SchemaError", "Store",
            "StoreError", "StoreUnavailable", "UpsertResult", "create_store_engine",
            "currency_exponent", "entity", "from_minor", "head_revision", "metadata",
            "normalize_currency", "require_head", "round_minor", "status", "to_minor", "upgrade",
            # reconciler persistence (store/_reconcile.py)
            "BREAK_COLUMNS", "ReconcileRun", "finish_reconcile_run", "insert_break_transitions",
            "insert_kpi_snapshot", "last_reconcile_as_of", "last_written", "read_canonical", "list_reconcile_runs", "lock_break_register", "read_break_register",
            "read_break_transitions", "read_kpi_snapshots", "read_probe_health",
            "set_break_acceptance", "start_reconcile_run", "write_break_register",
            # completeness findings of the collector (store/_completeness.py)
            "COMPLETENESS_COLUMNS", "insert_completeness_finding", "read_completeness_findings",
            # resync requests, approvals, attempts, audit and circuits (store/_resync.py)
            "ACTIVE_REQUEST_STATUSES", "REQUEST_STATUSES", "CircuitState", "ResyncRequest",
            "abandon_resync_attempts", "append_resync_audit", "claim_resync_request",
            "count_resync_attempts_since", "count_resync_requests", "decide_resync_request",
            "defer_resync_request",
            "due_resync_requests", "finish_resync_attempt", "finish_resync_request",
            "get_resync_request", "insert_resync_request", "latest_requests_by_break",
            "lock_circuit", "read_breaks", "read_circuit", "read_circuit_states", "read_resync_approvals",
            "read_resync_attempts", "read_resync_audit", "read_resync_outcomes",
            "read_resync_requests", "start_resync_attempt", "try_lock_resync_request",
            "unlock_resync_request", "write_circuit",
            # exporter and alert reads (store/_alerts.py)
            "SOURCE_HEALTH_SCHEMA", "Snapshot", "read_alert_breaks", "read_latest_snapshot",
            "read_source_health",
            # console reads and acknowledgements (store/_console.py)
            "acknowledge_break", "read_acknowledgements", "read_quarantine_summary",
            "read_break_transitions_of", "read_breaks_mentioning", "read_record_history",
            "read_records_where", "read_stream_health", "read_breaks_by_legal_entity",
            "read_breaks_where",
        ]
    )  # fmt: skip
    for name in store.__all__:
        assert getattr(store, name) is not None


def test_every_module_says_what_it_does_in_its_first_line() -> None:
    missing = []
    for package in OURS:
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "__init__.py" and not path.read_text().strip():
                continue
            if "migrations/versions" in path.as_posix():
                continue
            if ast.get_docstring(ast.parse(path.read_text())) is None:
                missing.append(str(path.relative_to(ROOT)))
    assert missing == []
