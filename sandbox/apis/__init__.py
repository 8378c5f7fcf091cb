"""The four vendor simulators (Salesforce, Kantata OX, NetSuite, Stripe) as ASGI apps over an estate."""

from __future__ import annotations

from typing import Any

from sandbox.apis._base import ApiError, Simulator, TokenStore
from sandbox.apis._faults import KINDS, FaultConfigError, FaultInjector, FaultPlan, FaultRule
from sandbox.apis._kantata import KantataCredentials, KantataSimulator
from sandbox.apis._netsuite import NetSuiteCredentials, NetSuiteSimulator
from sandbox.apis._query import QueryError, parse_soql, parse_suiteql
from sandbox.apis._salesforce import SalesforceCredentials, SalesforceSimulator
from sandbox.apis._stripe import StripeCredentials, StripeSimulator
from sandbox.apis._tls import TLSFiles, make_tls_files

SIMULATORS: dict[str, type[Simulator]] = {
    "salesforce": SalesforceSimulator,
    "kantata": KantataSimulator,
    "netsuite": NetSuiteSimulator,
    "stripe": StripeSimulator,
}
"""Simulator class per vendor, in the order the server starts them."""


def build_simulators(estate: Any, faults: FaultPlan | None = None) -> dict[str, Simulator]:
    """One simulator per vendor over the same estate, each with its share of the fault plan."""
    return {vendor: cls(estate, faults) for vendor, cls in SIMULATORS.items()}


__all__ = [
    "KINDS",
    "SIMULATORS",
    "ApiError",
    "FaultConfigError",
    "FaultInjector",
    "FaultPlan",
    "FaultRule",
    "KantataCredentials",
    "KantataSimulator",
    "NetSuiteCredentials",
    "NetSuiteSimulator",
    "QueryError",
    "SalesforceCredentials",
    "SalesforceSimulator",
    "Simulator",
    "StripeCredentials",
    "StripeSimulator",
    "TLSFiles",
    "TokenStore",
    "build_simulators",
    "make_tls_files",
    "parse_soql",
    "parse_suiteql",
]
