"""`tracing_recorder`: a `TraceRecorder` wired to the store and, when configured, to OTLP.

    TraceRecorder ► TracerProvider ┬► BatchSpanProcessor ► RedactingExporter ► StoreSpanExporter
                                   └► BatchSpanProcessor ► RedactingExporter ► OTLPSpanExporter

Both destinations get a batch processor, each its own:

- the store: a simple (synchronous) processor would insert and commit once per span inside
  ``span.end()``, on the gateway's hot path (a SQLite commit is an fsync). Batched, a commit
  carries up to `STORE_BATCH_SIZE` spans and happens on the processor's thread; the
  dashboard sees spans at most `STORE_DELAY_MS` late, and a crash loses at most the spans
  not yet written (debug traces; the audit trail is the record that must not lose any);
- OTLP: a slow or unreachable collector then delays only its own queue, never the store's
  writes nor the run.

Redaction runs on the processors' threads, once per destination (the cost of keeping the
two independent).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from opsgate.redaction import Redactor
from opsgate.store import Store
from opsgate.tracing import _attributes as A
from opsgate.tracing._recorder import TraceRecorder
from opsgate.tracing._redacting import RedactingExporter
from opsgate.tracing._store import StoreSpanExporter

__all__ = [
    "STORE_BATCH_SIZE",
    "STORE_DELAY_MS",
    "STORE_QUEUE_SIZE",
    "content_from_env",
    "otlp_endpoint_from_env",
    "tracing_recorder",
]

#: Spans per store transaction at most.
STORE_BATCH_SIZE = 512
#: How long an ended span waits at most before the store batch holding it is written.
STORE_DELAY_MS = 1000
#: Ended spans waiting for the store at most; beyond, the batch processor drops spans
#: (a process saturated for seconds; the SDK logs "Queue full, dropping Span").
STORE_QUEUE_SIZE = 8192


def content_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``OPSGATE_TRACE_CONTENT`` turns content capture on (default off)."""
    env = os.environ if environ is None else environ
    return env.get(A.TRACE_CONTENT_ENV, "").strip().lower() in A.TRUE_VALUES


def _traces_url(base: str) -> str:
    base = base.strip()
    if base.rstrip("/").endswith(A.OTLP_TRACES_PATH):
        return base
    return base.rstrip("/") + A.OTLP_TRACES_PATH


def otlp_endpoint_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The OTLP/HTTP traces URL the environment configures, or None.

    ``OPSGATE_OTLP_ENDPOINT`` (a base URL, or a full one ending in ``/v1/traces``), else
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as it is), else
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (a base URL).
    """
    env = os.environ if environ is None else environ
    ours = env.get(A.OTLP_ENDPOINT_ENV, "").strip()
    if ours:
        return _traces_url(ours)
    traces = env.get(A.OTEL_TRACES_ENDPOINT_ENV, "").strip()
    if traces:
        return traces
    base = env.get(A.OTEL_ENDPOINT_ENV, "").strip()
    return _traces_url(base) if base else None


def tracing_recorder(
    store: Store | None,
    *,
    redactor: Redactor | None = None,
    otlp_endpoint: str | None = None,
    content: bool | None = None,
    resource: Resource | None = None,
) -> TraceRecorder:
    """A `TraceRecorder` whose spans are redacted, then stored and (if configured) sent by OTLP.

    Args:
        store: Where spans are kept for the dashboard (None: not stored).
        redactor: What masks secrets and personal data (default: ``Redactor()``, no salt,
            PII on). Register the process's secret values on it (`Redactor.add_secret`).
        otlp_endpoint: OTLP/HTTP endpoint (base URL, or full URL ending in
            ``/v1/traces``); default from the environment (`otlp_endpoint_from_env`); no
            OTLP export when neither gives one.
        content: Record content (arguments, results, messages); default from
            ``OPSGATE_TRACE_CONTENT`` (off).
        resource: The spans' OTel resource (default: ``service.name`` from
            ``OTEL_SERVICE_NAME``, else ``opsgate``, plus ``OTEL_RESOURCE_ATTRIBUTES``).

    Call `TraceRecorder.shutdown` when done: it ends open spans and flushes both exporters.
    """
    redactor = redactor if redactor is not None else Redactor()
    endpoint = _traces_url(otlp_endpoint) if otlp_endpoint else otlp_endpoint_from_env()
    if content is None:
        content = content_from_env()
    if resource is None:
        name = os.environ.get(A.OTEL_SERVICE_NAME_ENV) or A.DEFAULT_SERVICE_NAME
        resource = Resource.create({SERVICE_NAME: name})
    provider = TracerProvider(resource=resource)
    if store is not None:
        provider.add_span_processor(
            BatchSpanProcessor(
                RedactingExporter(StoreSpanExporter(store), redactor),
                max_queue_size=STORE_QUEUE_SIZE,
                schedule_delay_millis=STORE_DELAY_MS,
                max_export_batch_size=STORE_BATCH_SIZE,
            )
        )
    if endpoint:
        provider.add_span_processor(
            BatchSpanProcessor(RedactingExporter(OTLPSpanExporter(endpoint=endpoint), redactor))
        )
    return TraceRecorder(provider, content=content, redactor=redactor, own_provider=True)
