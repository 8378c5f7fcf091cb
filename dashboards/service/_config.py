"""What the console needs from the settings, as one frozen value (no secrets: none are needed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from reconciler.resync import ResyncPolicy


@dataclass(frozen=True)
class ConsoleConfig:
    """The console's settings; ``o2c console`` builds it from the ``console`` settings group."""

    store_url: str
    identity_header: str | None = None
    local_user: str = "demo"
    local_role: str = "approver"
    roles: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    default_role: str = "viewer"
    refresh_seconds: float = 60.0
    cache_ttl_seconds: float = 30.0
    max_rows: int = 1000
    collector_metrics_url: str | None = None
    resync_policy: ResyncPolicy = field(default_factory=ResyncPolicy)
    """The same policy the resync engine runs with (``O2C_RESYNC__*``)."""
    store_label: str = ""
    """The store's URL with its password masked, for display."""
