"""The public surface of `probes` is pinned, and the registry is consistent with the classes."""

from __future__ import annotations

import probes
from store import ENTITIES


def test_the_public_surface_is_pinned() -> None:
    assert sorted(probes.__all__) == sorted(
        [
            "PROBES", "Health", "KantataConfig", "KantataProbe", "NetSuiteConfig",
            "NetSuiteProbe", "Page", "Probe", "ProbeAuthError", "ProbeConfig", "ProbeConflict",
            "ProbeError", "ProbeMalformedPage", "ProbeNotFound", "ProbeQuotaExhausted",
            "ProbeRateLimited", "ProbeResponseError", "ProbeSettings", "ProbeTimeout",
            "ProbeUnavailable", "Quota", "RequestStats", "RetrySettings", "SalesforceConfig",
            "SalesforceProbe", "SourceCount", "StripeConfig", "StripeProbe", "TimeoutSettings",
            "WriteResult", "build_client", "configure_tracing",
        ]
    )  # fmt: skip
    for name in probes.__all__:
        assert getattr(probes, name) is not None


def test_the_registry_has_one_probe_per_system_and_every_stream_feeds_an_entity() -> None:
    assert sorted(probes.PROBES) == ["kantata", "netsuite", "salesforce", "stripe"]
    for system, cls in probes.PROBES.items():
        assert cls.system == system
        assert set(cls.entities) == set(cls.streams)
        assert set(cls.entities.values()) <= set(ENTITIES)


def test_every_probe_error_is_an_o2c_error_with_its_ids() -> None:
    from store import O2CError

    error = probes.ProbeTimeout("slow", system="kantata", stream="projects", source_id="7")
    assert isinstance(error, probes.ProbeError) and isinstance(error, O2CError)
    assert (error.system, error.stream, error.source_id, error.transient) == (
        "kantata",
        "projects",
        "7",
        True,
    )
    assert not probes.ProbeAuthError("no", system="stripe").transient
