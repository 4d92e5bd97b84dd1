"""Debug traces: the gateway's events as OpenTelemetry spans (GenAI semantic conventions),
redacted before they leave the process, kept in the store and sent by OTLP.

    recorder = tracing_recorder(open_store())          # OTLP too if OPSGATE_OTLP_ENDPOINT set
    gateway = Gateway(toolbelt, policy, recorder=recorder)
    ...
    recorder.record_chat(run.run_id, "gpt-4o", "openai", t0, t1, 812, 64, 0.0031)
    recorder.shutdown()

Each run is its own trace: ``invoke_agent {agent_id}`` with ``execute_tool {tool}`` and
``chat {model}`` children. Span and attribute names, and the environment variables, are in
`opsgate.tracing.attributes` (`_attributes`). The gateway takes one recorder: next to the
audit trail, give it a recorder that hands each event to both (the audit one first: it may
refuse; this one never raises).
"""

from opsgate.tracing import _attributes as attributes
from opsgate.tracing._export import (
    STORE_BATCH_SIZE,
    STORE_DELAY_MS,
    STORE_QUEUE_SIZE,
    content_from_env,
    otlp_endpoint_from_env,
    tracing_recorder,
)
from opsgate.tracing._recorder import TraceRecorder
from opsgate.tracing._redacting import RedactingExporter
from opsgate.tracing._store import StoreSpanExporter, span_row

__all__ = [
    "STORE_BATCH_SIZE",
    "STORE_DELAY_MS",
    "STORE_QUEUE_SIZE",
    "RedactingExporter",
    "StoreSpanExporter",
    "TraceRecorder",
    "attributes",
    "content_from_env",
    "otlp_endpoint_from_env",
    "span_row",
    "tracing_recorder",
]
