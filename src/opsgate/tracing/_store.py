"""`StoreSpanExporter`: spans into the store's ``spans`` table, where the dashboard reads them.

Each call of `StoreSpanExporter.export` is one transaction with one multi-row insert, so a
batch span processor in front of it (as `tracing_recorder` sets up) writes a batch of spans
per commit, off the gateway's hot path. It writes what it is given: wrap it in
`RedactingExporter` so that only redacted spans are stored.

Row format: ids as lower-case hex (16 and 32 digits), ``kind`` and ``status`` as the OTel
enum names (``INTERNAL``, ``CLIENT``; ``UNSET``, ``OK``, ``ERROR``), ``attributes`` as a JSON
object (the status description, if any, under ``otel.status_description``), ``events`` as a
JSON list of ``{"name", "time_ns", "attributes"}``; ``run_id`` from the span's
``gen_ai.conversation.id``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from opsgate.store import Store
from opsgate.store import spans as spans_table
from opsgate.tracing import _attributes as A

__all__ = ["StoreSpanExporter"]

_log = logging.getLogger("opsgate.tracing")

_NAME_MAX = 256  # spans.name is String(256)
_RUN_ID_MAX = 64  # spans.run_id is String(64)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


_COLUMNS = tuple(column.name for column in spans_table.columns)  # `_span_values`' order


def span_row(span: ReadableSpan) -> dict[str, Any] | None:
    """The ``spans`` row of ``span``; None for a span without a context (not exportable)."""
    values = _span_values(span)
    return None if values is None else dict(zip(_COLUMNS, values, strict=True))


def _span_values(span: ReadableSpan) -> tuple[Any, ...] | None:
    """`span_row`'s values in `_COLUMNS`' order (what the driver's executemany takes)."""
    ctx = span.context
    if ctx is None:
        return None
    attrs = dict(span.attributes or {})
    run_id = attrs.get(A.GEN_AI_CONVERSATION_ID)
    status = span.status
    if status.description:
        attrs[A.OTEL_STATUS_DESCRIPTION] = status.description
    start = span.start_time or 0
    parent = span.parent
    events = [
        {"name": event.name, "time_ns": event.timestamp, "attributes": dict(event.attributes or {})}
        for event in span.events
    ]
    return (
        format(ctx.span_id, "016x"),
        format(ctx.trace_id, "032x"),
        None if parent is None else format(parent.span_id, "016x"),
        str(run_id)[:_RUN_ID_MAX] if run_id is not None else None,
        span.name[:_NAME_MAX],
        span.kind.name,
        start,
        span.end_time or start,
        status.status_code.name,
        _json(attrs),
        _json(events),
    )


class StoreSpanExporter(SpanExporter):
    """Writes spans to the ``spans`` table of an opsgate store.

    Args:
        store: The open store (its engine is shared, not closed here).

    Attributes:
        exported: Spans written so far.
        failures: Batches that could not be written (their spans are lost: debug traces are
            not the audit record).
        last_error: The last write error, as ``Type: message``.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.exported = 0
        self.failures = 0
        self.last_error = ""
        self._closed = False
        self._lock = threading.Lock()
        # the driver's own executemany: no SQLAlchemy compiling of every row's parameters
        self._insert_sql = store.driver_insert(spans_table)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Insert ``spans`` in one transaction."""
        if self._closed:
            return SpanExportResult.FAILURE
        rows = [row for row in map(_span_values, spans) if row is not None]
        if not rows:
            return SpanExportResult.SUCCESS
        try:
            with self.store.engine.begin() as conn:
                conn.exec_driver_sql(self._insert_sql, rows)
        except Exception as exc:
            with self._lock:
                self.failures += 1
                # The driver's error, not SQLAlchemy's (which lists every row's values).
                cause = getattr(exc, "orig", None) or exc
                self.last_error = f"{type(cause).__name__}: {cause}"[:500]
            _log.warning("%d span(s) could not be stored: %s", len(rows), self.last_error)
            return SpanExportResult.FAILURE
        with self._lock:
            self.exported += len(rows)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Refuse further exports (the store stays open: its owner closes it)."""
        self._closed = True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here: every export has committed when it returns."""
        return True
