"""`RedactingExporter`: every string a span carries is redacted before the inner exporter
sees it, whatever code set it; clean spans pass as they are; failures never leak."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from opsgate.redaction import Redactor
from opsgate.tracing import RedactingExporter

SECRET = "pw-9f8e7d6c5b4a"
CARD = "4111 1111 1111 1111"
IBAN = "GB82 WEST 1234 5698 7654 32"
PHONE = "+44 20 7946 0958"
EMAIL = "ana@example.com"
API_KEY = "sk-ant-abcdefghijklmnopqrstuvwxyz012345"


class Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.closed = True


def _sdk(span: object) -> ReadableSpan:
    """The SDK span behind the API type `start_span` is declared with."""
    assert isinstance(span, ReadableSpan)
    return span


def _pipeline(
    redactor: Redactor, limits: SpanLimits | None = None
) -> tuple[TracerProvider, Collect, RedactingExporter]:
    inner = Collect()
    exporter = RedactingExporter(inner, redactor)
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, inner, exporter


def test_every_string_of_a_span_is_redacted() -> None:
    provider, inner, exporter = _pipeline(Redactor(secrets={"DB": SECRET}))
    tracer = provider.get_tracer("someone-else")
    linked = tracer.start_span("linked")
    linked.end()
    api_span = tracer.start_span(
        f"lookup {EMAIL}",
        kind=SpanKind.CLIENT,
        attributes={
            "plain": "nothing to see",
            "secret": f"password is {SECRET}",
            "list": (EMAIL, "ok", CARD),
            "n": 7,
            "flag": True,
            f"for.{EMAIL}": "key holds it",
        },
        links=[Link(linked.get_span_context(), {"why": f"call {PHONE}"})],
    )
    api_span.add_event(f"mail to {EMAIL}", {"iban": IBAN, "key": API_KEY, "count": 2})
    api_span.add_event("clean", {"x": "y"})
    api_span.set_status(Status(StatusCode.ERROR, f"failed for {EMAIL} with {SECRET}"))
    api_span.end()
    span = _sdk(api_span)

    out = inner.spans[-1]
    assert out is not span
    assert out.name == "lookup [redacted:email]"
    attrs = dict(out.attributes or {})
    assert attrs["plain"] == "nothing to see"
    assert attrs["secret"] == "password is [redacted:secret:DB]"
    assert attrs["list"] == ("[redacted:email]", "ok", "[redacted:card]")
    assert attrs["n"] == 7 and attrs["flag"] is True
    assert attrs["[redacted:email]"] == "key holds it"  # keys too
    assert out.events[0].name == "mail to [redacted:email]"
    assert dict(out.events[0].attributes or {}) == {
        "iban": "[redacted:iban]",
        "key": "[redacted:api_key]",
        "count": 2,
    }
    assert out.events[1] is span.events[1]  # clean events are not copied
    assert dict(out.links[0].attributes or {}) == {"why": "call [redacted:phone]"}
    assert out.status.status_code is StatusCode.ERROR
    assert out.status.description == "failed for [redacted:email] with [redacted:secret:DB]"
    # Everything else is the original's.
    assert out.context == span.context and out.kind is SpanKind.CLIENT
    assert (out.start_time, out.end_time) == (span.start_time, span.end_time)
    assert out.resource is span.resource
    assert out.instrumentation_scope == span.instrumentation_scope
    text = repr([out.name, attrs, out.events[0].attributes, out.status.description])
    for needle in (SECRET, CARD, IBAN, PHONE, EMAIL, API_KEY):
        assert needle not in text
    assert exporter.redacted == 1 and exporter.dropped == 0


def test_a_clean_span_is_passed_on_as_it_is() -> None:
    provider, inner, exporter = _pipeline(Redactor())
    span = provider.get_tracer("t").start_span("execute_tool lookup", attributes={"a": "b"})
    span.add_event("opsgate.decision", {"opsgate.decision": "allow"})
    span.end()
    (out,) = inner.spans
    assert out.name == "execute_tool lookup"
    assert exporter.redacted == 0
    assert dict(out.attributes or {}) == {"a": "b"}


def test_dropped_counts_survive_the_copy() -> None:
    provider, inner, _ = _pipeline(Redactor(), SpanLimits(max_span_attributes=2))
    api_span = provider.get_tracer("t").start_span(
        "s", attributes={"a": EMAIL, "b": "2", "c": "3", "d": "4"}
    )
    api_span.end()
    span = _sdk(api_span)
    (out,) = inner.spans
    assert out is not span and out.dropped_attributes == 2


class BrokenRedactor(Redactor):
    def redact_text(self, text: str) -> str:
        if "boom" in text:
            raise RuntimeError("redactor bug")
        return super().redact_text(text)


def test_a_span_that_cannot_be_redacted_is_dropped_not_exported() -> None:
    inner = InMemorySpanExporter()
    exporter = RedactingExporter(inner, BrokenRedactor())
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    good = tracer.start_span("good", attributes={"mail": EMAIL})
    good.end()
    bad = tracer.start_span("bad", attributes={"x": f"boom {EMAIL}"})
    bad.end()
    result = exporter.export([_sdk(good), _sdk(bad)])
    assert result is SpanExportResult.FAILURE
    assert [s.name for s in inner.get_finished_spans()] == ["good"]
    assert dict(inner.get_finished_spans()[0].attributes or {}) == {"mail": "[redacted:email]"}
    assert exporter.dropped == 1
    assert exporter.export([_sdk(bad)]) is SpanExportResult.FAILURE
    assert len(inner.get_finished_spans()) == 1


def test_shutdown_and_flush_reach_the_inner_exporter() -> None:
    inner = Collect()
    exporter = RedactingExporter(inner, Redactor())
    assert exporter.force_flush(10) is True
    exporter.shutdown()
    assert inner.closed
