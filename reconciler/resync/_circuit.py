"""The per-system circuit breaker, kept in the store so every worker sees the same state.

closed --(``circuit_failures`` consecutive failed attempts)--> open
open --(``circuit_cooldown`` passed; one worker wins the move)--> half_open: one probe attempt
half_open --(probe succeeds)--> closed;  --(probe fails)--> open again (a new cooldown)
A half-open probe whose worker died is retaken after the policy's lease.
While open (or half-open with its probe running) no write reaches the system.
"""

from __future__ import annotations

from datetime import datetime

import store
from reconciler.resync._policy import ResyncPolicy

ACTOR = "circuit"


def _audit(conn: object, system: str, at: datetime, summary: dict[str, object]) -> None:
    store.append_resync_audit(
        conn,  # type: ignore[arg-type]
        kind="circuit", actor=ACTOR, at=at, system=system, summary=summary,
    )  # fmt: skip


def gate(db: store.Store, system: str, policy: ResyncPolicy, now: datetime) -> str:
    """'closed' (go), 'probe' (go: this attempt is the half-open probe) or 'blocked' (no write)."""
    with db.begin(write=True) as conn:
        store.lock_circuit(conn, system)
        circuit = store.read_circuit(conn, system)
        if circuit is None or circuit.state == "closed":
            return "closed"
        if circuit.state == "open":
            opened = circuit.opened_at or now
            if now < opened + policy.circuit_cooldown:
                return "blocked"
        elif circuit.probe_until is not None and now < circuit.probe_until:
            return "blocked"  # half-open, and its probe is still running elsewhere
        moved = store.write_circuit(
            conn, system, state="half_open", consecutive_failures=circuit.consecutive_failures,
            opened_at=circuit.opened_at, probe_until=now + policy.lease, at=now,
            expect_state=circuit.state,
        )  # fmt: skip
        if not moved:
            return "blocked"
        _audit(conn, system, now, {"from": circuit.state, "to": "half_open"})
        return "probe"


def record_success(db: store.Store, system: str, now: datetime) -> None:
    """A write to the system succeeded: the circuit closes and its failure count resets."""
    with db.begin(write=True) as conn:
        store.lock_circuit(conn, system)
        circuit = store.read_circuit(conn, system)
        if circuit is not None and circuit.state == "closed" and circuit.consecutive_failures == 0:
            return
        store.write_circuit(
            conn, system, state="closed", consecutive_failures=0, opened_at=None,
            probe_until=None, at=now,
        )  # fmt: skip
        if circuit is not None and circuit.state != "closed":
            _audit(conn, system, now, {"from": circuit.state, "to": "closed"})


def record_failure(db: store.Store, system: str, policy: ResyncPolicy, now: datetime) -> str:
    """An attempt on the system failed at the vendor; returns the circuit's state after it."""
    with db.begin(write=True) as conn:
        store.lock_circuit(conn, system)
        circuit = store.read_circuit(conn, system)
        failures = (circuit.consecutive_failures if circuit else 0) + 1
        state = circuit.state if circuit else "closed"
        if state == "half_open" or failures >= policy.circuit_failures:
            store.write_circuit(
                conn, system, state="open", consecutive_failures=failures, opened_at=now,
                probe_until=None, at=now,
            )  # fmt: skip
            _audit(conn, system, now, {"from": state, "to": "open", "failures": failures})
            return "open"
        store.write_circuit(
            conn, system, state=state, consecutive_failures=failures,
            opened_at=circuit.opened_at if circuit else None,
            probe_until=circuit.probe_until if circuit else None, at=now,
        )  # fmt: skip
        return state
