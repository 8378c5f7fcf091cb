"""Resync policy: per break type automatic, needs-approval or manual, and the limits every repair obeys.

One frozen value, validated when built (``o2c.settings`` builds it from ``O2C_RESYNC__*``), passed
to every call. A break type's default mode is its rule's remediation; ``modes`` overrides it. An
automatic repair whose amount at risk is above ``approval_above_minor`` needs approval instead.
A break type without a catalogue action is manual whatever the settings say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType

from reconciler._config import BREAK_TYPES

MODES: tuple[str, ...] = ("auto", "approval", "manual")


@dataclass(frozen=True)
class ResyncPolicy:
    """What may be repaired without a person, and how hard the engine may push each vendor."""

    modes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Break type -> auto | approval | manual, overriding the rule's remediation."""
    approval_above_minor: int | None = 10_000_000
    """An automatic repair with more at risk than this (reporting-currency minor units; the
    break's own amount when it has no reporting amount) needs approval. None: no threshold."""
    rate_per_minute: int = 30
    """Attempts per system per minute, counted over every worker sharing the store."""
    rate_per_minute_by_system: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({})
    )
    max_attempts: int = 5
    """Attempts of one request before it fails for good (an operator may ask again)."""
    backoff: timedelta = timedelta(seconds=30)
    """Wait before the second attempt; doubles per attempt up to ``max_backoff``."""
    max_backoff: timedelta = timedelta(minutes=15)
    circuit_failures: int = 3
    """Consecutive failed attempts on a system that open its circuit."""
    circuit_cooldown: timedelta = timedelta(minutes=2)
    """How long an open circuit blocks every write before one half-open probe may try."""
    lease: timedelta = timedelta(minutes=5)
    """How long a claimed request (or a half-open probe) may run before another worker may take
    it over (SQLite; on PostgreSQL a dead worker's claim is released with its connection)."""
    max_actions_per_cycle: int = 50
    distinct_approver: bool = True
    """The person approving must not be the one who asked (four eyes)."""

    def __post_init__(self) -> None:
        unknown = set(self.modes) - set(BREAK_TYPES)
        if unknown:
            raise ValueError(f"modes: unknown break types {sorted(unknown)}")
        bad = {t: m for t, m in self.modes.items() if m not in MODES}
        if bad:
            raise ValueError(f"modes: {bad} (each must be one of {', '.join(MODES)})")
        for name in (
            "rate_per_minute",
            "max_attempts",
            "circuit_failures",
            "max_actions_per_cycle",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if any(v < 1 for v in self.rate_per_minute_by_system.values()):
            raise ValueError("rate_per_minute_by_system: every rate must be at least 1")
        if self.approval_above_minor is not None and self.approval_above_minor < 0:
            raise ValueError("approval_above_minor must not be negative")
        for name in ("backoff", "max_backoff", "circuit_cooldown", "lease"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        object.__setattr__(self, "modes", MappingProxyType(dict(self.modes)))
        object.__setattr__(
            self,
            "rate_per_minute_by_system",
            MappingProxyType(dict(self.rate_per_minute_by_system)),
        )

    def mode(
        self,
        break_type: str,
        remediation: str | None,
        *,
        amount_minor: int | None = None,
        has_action: bool = True,
    ) -> str:
        """auto, approval or manual for one break (its type, rule remediation and amount)."""
        if not has_action:
            return "manual"
        chosen = self.modes.get(break_type) or remediation or "manual"
        if chosen not in MODES:
            chosen = "manual"
        if (
            chosen == "auto"
            and self.approval_above_minor is not None
            and amount_minor is not None
            and abs(amount_minor) > self.approval_above_minor
        ):
            return "approval"
        return chosen

    def rate_of(self, system: str) -> int:
        return self.rate_per_minute_by_system.get(system, self.rate_per_minute)

    def backoff_after(self, attempts: int) -> timedelta:
        """Wait after the ``attempts``-th failed attempt (exponential, capped)."""
        wait: timedelta = self.backoff * (2 ** max(0, attempts - 1))
        return min(wait, self.max_backoff)
