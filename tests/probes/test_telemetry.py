"""Traces: one span per cycle with the request spans beneath it; a broken exporter breaks nothing.

Tests use their own SDK tracer provider with an in-memory exporter (the global one cannot be
replaced once set).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sandbox.server import Sandbox
from tests.probes.conftest import ProbeFactory, read_all

pytestmark = pytest.mark.anyio


async def test_a_cycle_span_parents_every_request_span(make_probe: ProbeFactory) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    probe = make_probe("salesforce", tracer_provider=provider)

    pages = await read_all(probe, "opportunities")

    spans = exporter.get_finished_spans()
    [cycle] = [s for s in spans if s.name == "probe.read salesforce/opportunities"]
    requests = [s for s in spans if s is not cycle]
    assert cycle.attributes is not None
    assert cycle.attributes["o2c.records"] == sum(p.records_read for p in pages)
    assert cycle.attributes["o2c.requests"] == probe.stats.requests
    assert len(requests) == probe.stats.requests
    assert all(s.parent is not None and s.parent.span_id == cycle.context.span_id for s in requests)
    # Credentials never reach a span: the token travels in a header, which is not captured.
    text = " ".join(str(dict(s.attributes or {})) for s in spans)
    assert "sandbox-sf-secret" not in text and "Bearer" not in text


async def test_a_failed_cycle_is_recorded_as_an_error(
    faults: Sandbox, make_probe: ProbeFactory
) -> None:
    from probes import ProbeUnavailable
    from tests.probes.conftest import inject

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inject(faults, "kantata", {"kind": "down"})
    probe = make_probe("kantata", tracer_provider=provider)
    with pytest.raises(ProbeUnavailable):
        await read_all(probe, "projects")
    [cycle] = [s for s in exporter.get_finished_spans() if s.name.startswith("probe.read")]
    assert cycle.status.status_code.name == "ERROR"


class Broken(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("collector unreachable")

    def shutdown(self) -> None:
        pass


async def test_a_broken_exporter_never_breaks_a_cycle(make_probe: ProbeFactory) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Broken()))
    probe = make_probe("kantata", tracer_provider=provider)
    pages = await read_all(probe, "projects")
    assert sum(p.records for p in pages) > 0


def test_tracing_is_off_unless_an_endpoint_is_configured() -> None:
    from probes import configure_tracing

    assert configure_tracing(None) is None
    provider = configure_tracing("http://127.0.0.1:9/v1/traces")
    assert isinstance(provider, TracerProvider)
    provider.shutdown()
