"""Probes: read changes from each vendor's API and write back for resyncs (built by issue 4).

The public surface is this module: the Probe interface and what it yields (``probes._base``), the
vendor configs and settings, the error tree, and ``PROBES``, the explicit registry of one probe
class per system. See ``probes/MAPPING.md`` for which vendor field becomes which canonical column.
"""

from __future__ import annotations

from probes._base import (
    Health,
    KantataConfig,
    NetSuiteConfig,
    Page,
    Probe,
    ProbeAuthError,
    ProbeConfig,
    ProbeConflict,
    ProbeError,
    ProbeMalformedPage,
    ProbeNotFound,
    ProbeQuotaExhausted,
    ProbeRateLimited,
    ProbeResponseError,
    ProbeSettings,
    ProbeTimeout,
    ProbeUnavailable,
    Quota,
    RequestStats,
    RetrySettings,
    SalesforceConfig,
    SourceCount,
    StripeConfig,
    TimeoutSettings,
    WriteResult,
    build_client,
)
from probes._kantata import KantataProbe
from probes._netsuite import NetSuiteProbe
from probes._salesforce import SalesforceProbe
from probes._stripe import StripeProbe
from probes._telemetry import configure_tracing

PROBES: dict[str, type[Probe]] = {
    "salesforce": SalesforceProbe,
    "kantata": KantataProbe,
    "netsuite": NetSuiteProbe,
    "stripe": StripeProbe,
}
"""One probe class per system, registered explicitly."""

__all__ = [
    "PROBES",
    "Health",
    "KantataConfig",
    "KantataProbe",
    "NetSuiteConfig",
    "NetSuiteProbe",
    "Page",
    "Probe",
    "ProbeAuthError",
    "ProbeConfig",
    "ProbeConflict",
    "ProbeError",
    "ProbeMalformedPage",
    "ProbeNotFound",
    "ProbeQuotaExhausted",
    "ProbeRateLimited",
    "ProbeResponseError",
    "ProbeSettings",
    "ProbeTimeout",
    "ProbeUnavailable",
    "Quota",
    "RequestStats",
    "RetrySettings",
    "SalesforceConfig",
    "SalesforceProbe",
    "SourceCount",
    "StripeConfig",
    "StripeProbe",
    "TimeoutSettings",
    "WriteResult",
    "build_client",
    "configure_tracing",
]
