"""Fault injection for the vendor simulators: rules, their file format and the per-app injector.

A fault plan is a list of rules. Each rule names a vendor, an endpoint pattern and a kind, and fires
for matching requests according to `rate` (a probability drawn from a seeded generator), `after`
(skip the first N matching requests) and `count` (fire at most N times). The same file works at start
(`serve --faults FILE`, YAML or JSON) and at runtime (`POST /__admin/faults` on each simulator).

File format::

    seed: 7                     # optional; makes every `rate` draw reproducible
    faults:
      - vendor: salesforce      # salesforce | kantata | netsuite | stripe | "*"
        endpoint: query         # fnmatch pattern over endpoint names, default "*"
        kind: latency           # see KINDS below
        seconds: 0.5            # kind parameters (see below)
        rate: 1.0               # probability a matching request is hit, default 1
        after: 0                # matching requests to let through first, default 0
        count: null             # stop after firing this many times, default unlimited

Kinds and their parameters:
  latency          `seconds` (fixed) or `min`/`max` (uniform, seeded): delay then answer normally.
  error            `status` (default 500): a 5xx (or any status) in the vendor's error envelope.
  rate_limit       the vendor's own signal: Salesforce 403 REQUEST_LIMIT_EXCEEDED, others 429.
                   A burst is `after: N, count: M` (requests N+1 .. N+M are refused).
  hang             `seconds` (default 60): wait longer than any client time-out, then answer 504
                   without running the endpoint (a late request must not write or use up rules).
  malformed_json   200 with a body that is not JSON.
  truncated_json   200 with the body cut in half (Content-Length matches the cut).
  duplicate_page   a continuation page repeats the last record of the previous page first.
  change_between_pages
                   before a continuation page is read, a record of the result set is modified in
                   the estate (its modified stamp moves to `estate.now`); offset-paged APIs then
                   skip a record, locator/cursor APIs return the record's new values.
  lost_response    write endpoints: the write commits, then `mode: drop` (default) closes the
                   connection without an answer, or `mode: error` answers 500.
  token_expiry     every access token issued so far is revoked (Salesforce, NetSuite OAuth 2);
                   the next call gets the vendor's 401 and the client must fetch a new token.
  down             "stale source": every request is answered 503 (vendor envelope) until reset.

Endpoint names (for `endpoint` patterns) are listed by `GET /__admin/faults` on each simulator.
"""

from __future__ import annotations

import fnmatch
import json
import random
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

VENDORS = ("salesforce", "kantata", "netsuite", "stripe")

KINDS = (
    "latency",
    "error",
    "rate_limit",
    "hang",
    "malformed_json",
    "truncated_json",
    "duplicate_page",
    "change_between_pages",
    "lost_response",
    "token_expiry",
    "down",
)

# Parameters each kind accepts besides the common ones; anything else is a configuration error.
_PARAMS: dict[str, frozenset[str]] = {
    "latency": frozenset({"seconds", "min", "max"}),
    "error": frozenset({"status"}),
    "rate_limit": frozenset(),
    "hang": frozenset({"seconds"}),
    "malformed_json": frozenset(),
    "truncated_json": frozenset(),
    "duplicate_page": frozenset(),
    "change_between_pages": frozenset(),
    "lost_response": frozenset({"mode"}),
    "token_expiry": frozenset(),
    "down": frozenset(),
}
_COMMON = frozenset({"vendor", "endpoint", "kind", "rate", "after", "count"})


class FaultConfigError(ValueError):
    """A fault rule or fault file that cannot be understood."""


@dataclass
class FaultRule:
    """One rule of a fault plan; `matched`/`fired` count what it has seen since it was added."""

    vendor: str
    kind: str
    endpoint: str = "*"
    rate: float = 1.0
    after: int = 0
    count: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    matched: int = 0
    fired: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any], default_vendor: str | None = None) -> FaultRule:
        if not isinstance(raw, dict):
            raise FaultConfigError(f"a fault rule must be a mapping, got {raw!r}")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise FaultConfigError(f"unknown fault kind {kind!r}; expected one of {KINDS}")
        vendor = raw.get("vendor", default_vendor or "*")
        if vendor != "*" and vendor not in VENDORS:
            raise FaultConfigError(f"unknown vendor {vendor!r}")
        unknown = set(raw) - _COMMON - _PARAMS[kind]
        if unknown:
            raise FaultConfigError(f"fault {kind!r} does not take {sorted(unknown)}")
        rate = float(raw.get("rate", 1.0))
        if not 0.0 <= rate <= 1.0:
            raise FaultConfigError(f"rate must be within [0, 1], got {rate}")
        count = raw.get("count")
        if kind == "lost_response" and raw.get("mode", "drop") not in ("drop", "error"):
            raise FaultConfigError("lost_response mode must be 'drop' or 'error'")
        return cls(
            vendor=vendor,
            kind=kind,
            endpoint=str(raw.get("endpoint", "*")),
            rate=rate,
            after=int(raw.get("after", 0)),
            count=None if count is None else int(count),
            params={k: raw[k] for k in _PARAMS[kind] if k in raw},
        )

    def spec(self) -> dict[str, Any]:
        """The rule as written in a fault file (without its counters)."""
        out = {k: v for k, v in asdict(self).items() if k in _COMMON}
        out.update(self.params)
        return out

    def to_dict(self) -> dict[str, Any]:
        return self.spec() | {"matched": self.matched, "fired": self.fired}


@dataclass(frozen=True)
class FaultPlan:
    """A seed and the rules read from a fault file or an admin request."""

    seed: int = 0
    rules: tuple[FaultRule, ...] = ()

    @classmethod
    def from_obj(cls, raw: Any, default_vendor: str | None = None) -> FaultPlan:
        if raw is None:
            return cls()
        if isinstance(raw, list):
            raw = {"faults": raw}
        if not isinstance(raw, dict):
            raise FaultConfigError("a fault plan is a mapping with 'faults' or a list of rules")
        rules = tuple(FaultRule.from_dict(r, default_vendor) for r in raw.get("faults") or [])
        return cls(seed=int(raw.get("seed", 0)), rules=rules)

    @classmethod
    def load(cls, path: str | Path) -> FaultPlan:
        """Read a YAML or JSON fault file (JSON is YAML, but a .json file is parsed strictly)."""
        text = Path(path).read_text()
        raw = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        return cls.from_obj(raw)

    def for_vendor(self, vendor: str) -> FaultPlan:
        return FaultPlan(
            seed=self.seed,
            rules=tuple(
                FaultRule.from_dict(r.spec() | {"vendor": vendor})
                for r in self.rules
                if r.vendor in (vendor, "*")
            ),
        )


class FaultInjector:
    """The live rules of one simulator. Thread-safe; every draw comes from one seeded generator."""

    def __init__(self, vendor: str, endpoints: tuple[str, ...], plan: FaultPlan | None = None):
        self.vendor = vendor
        self.endpoints = endpoints
        self._lock = threading.Lock()
        self._seed = 0
        self._rng = random.Random(0)
        self._rules: list[FaultRule] = []
        if plan is not None:
            self.load(plan.for_vendor(vendor), replace=True)

    def load(self, plan: FaultPlan, replace: bool = False) -> None:
        with self._lock:
            if replace:
                self._rules = []
            # Re-seeding on every load keeps a run reproducible from the moment its plan was set.
            self._seed = plan.seed
            self._rng = random.Random(f"{self.vendor}:{plan.seed}")
            self._rules.extend(plan.for_vendor(self.vendor).rules)

    def reset(self) -> None:
        with self._lock:
            self._rules = []
            self._rng = random.Random(f"{self.vendor}:{self._seed}")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "vendor": self.vendor,
                "seed": self._seed,
                "endpoints": list(self.endpoints),
                "kinds": list(KINDS),
                "faults": [r.to_dict() for r in self._rules],
            }

    def fire(self, endpoint: str, kind: str) -> FaultRule | None:
        """The first rule of `kind` matching `endpoint` that fires for this request, if any."""
        with self._lock:
            hit: FaultRule | None = None
            for rule in self._rules:
                if rule.kind != kind or not fnmatch.fnmatchcase(endpoint, rule.endpoint):
                    continue
                rule.matched += 1
                if rule.matched <= rule.after:
                    continue
                if rule.count is not None and rule.fired >= rule.count:
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                rule.fired += 1
                hit = hit or rule
            return hit

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._rng.uniform(low, high)
