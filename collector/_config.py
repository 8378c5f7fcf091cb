"""The collector's configuration as plain frozen values (built from settings by ``o2c``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CollectorConfig:
    """Which streams run, how often, and how long a cycle may take.

    ``intervals`` overrides ``interval_seconds`` per system (key ``"salesforce"``) or per stream
    (key ``"salesforce.opportunities"``); the most specific key wins. ``streams`` limits a system
    to some of its probe's streams (absent: all of them).
    """

    systems: tuple[str, ...] = ("salesforce", "kantata", "netsuite", "stripe")
    streams: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    interval_seconds: float = 300.0
    intervals: Mapping[str, float] = field(default_factory=dict)
    completeness_interval_seconds: float = 3600.0
    cycle_timeout_seconds: float = 900.0
    misfire_grace_seconds: float = 60.0
    max_concurrent_streams: int = 2
    """Cycles of one system that may run at the same time (vendor rate limits are per system)."""
    batch_records: int = 20_000
    """Most records written in one transaction when pages queue up faster than they are written."""
    start_jitter_seconds: float = 5.0
    """First runs are spread over this many seconds so that streams do not start in lockstep."""

    def interval(self, system: str, stream: str) -> float:
        for key in (f"{system}.{stream}", system):
            if key in self.intervals:
                return float(self.intervals[key])
        return self.interval_seconds
