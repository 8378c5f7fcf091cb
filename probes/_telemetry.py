"""OpenTelemetry for probes: a span per cycle (a stream read) and per HTTP request; never raises.

Request spans come from opentelemetry-instrumentation-httpx on the probe's own client. Spans go to
the tracer provider the caller passes (tests: an SDK provider with an in-memory exporter) or the
global one, a no-op unless ``configure_tracing`` installed an OTLP exporter. Any telemetry failure
is logged and swallowed: a broken exporter must never fail a cycle. No credentials reach a span:
tokens travel in headers, which are not captured, and attributes are ids and counts only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

log = logging.getLogger(__name__)

TRACER_NAME = "o2c.probes"


def instrument_client(client: httpx.AsyncClient, tracer_provider: Any | None = None) -> None:
    """Trace every request of this client (only this one; the global httpx stays untouched)."""
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=tracer_provider)
    except Exception:  # telemetry must never break a probe
        log.warning("could not instrument the probe HTTP client", exc_info=True)


def tracer(tracer_provider: Any | None = None) -> trace.Tracer:
    try:
        return trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
    except Exception:
        log.warning("no tracer available; spans are dropped", exc_info=True)
        return trace.NoOpTracer()


def start_span(tracer_provider: Any | None, name: str, **attributes: Any) -> Span:
    """A started span (not made current); a non-recording span if telemetry fails."""
    try:
        return tracer(tracer_provider).start_span(
            name, attributes={k: v for k, v in attributes.items() if v is not None}
        )
    except Exception:
        log.warning("could not start span %s", name, exc_info=True)
        return trace.INVALID_SPAN


@contextlib.contextmanager
def current(span: Span) -> Iterator[None]:
    """Make ``span`` the parent of spans started inside (e.g. the request spans of one page)."""
    try:
        manager = trace.use_span(span, end_on_exit=False, record_exception=False)
        manager.__enter__()
    except Exception:
        log.warning("could not activate span", exc_info=True)
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            manager.__exit__(None, None, None)


def set_attributes(span: Span, **attributes: Any) -> None:
    try:
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
    except Exception:
        log.warning("could not set span attributes", exc_info=True)


def end_span(span: Span, error: BaseException | None = None) -> None:
    try:
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()
    except Exception:
        log.warning("could not end span", exc_info=True)


def configure_tracing(endpoint: str | None, *, service_name: str = "o2c-monitor") -> Any | None:
    """An SDK tracer provider exporting by OTLP/HTTP to ``endpoint``; None when not configured.

    Export happens in a background batch processor; its failures are logged by the SDK, never
    raised into a cycle.
    """
    if not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        return provider
    except Exception:
        log.warning("could not configure OTLP tracing; spans are dropped", exc_info=True)
        return None
