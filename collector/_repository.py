"""Read-only queries the collector needs beyond the Store's methods (probe-run freshness)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from store import Store, metadata


def last_successes(store: Store) -> dict[tuple[str, str], datetime]:
    """When the last fully successful cycle of each (system, stream) finished, any process."""
    runs = metadata.tables["probe_runs"]
    query = (
        select(runs.c.source_system, runs.c.stream, func.max(runs.c.finished_at))
        .where(runs.c.status == "succeeded", runs.c.stream.is_not(None))
        .group_by(runs.c.source_system, runs.c.stream)
    )
    with store.begin() as conn:
        return {
            (system, stream): at for system, stream, at in conn.execute(query) if at is not None
        }
