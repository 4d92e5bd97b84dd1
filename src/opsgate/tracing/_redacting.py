"""`RedactingExporter`: nothing leaves the process unredacted, whatever code set it.

It wraps a span exporter (the store's, OTLP's) and hands it copies of the spans in which
every string an attribute, event or link can carry is redacted: span names, attribute keys
and values (strings and sequences of strings), event names and attributes, link attributes,
and the status description. Registered secrets, credential patterns and (with the
redactor's ``pii``) e-mail addresses, phone, card and IBAN numbers are masked.

The attributes that carry who acted (`ACTOR_ATTRIBUTES`: the invoker, the agent, the
approver, set from the events' `opsgate.redaction.ACTOR_FIELDS`) follow the audit trail's
rule: they are redacted as identities (`Redactor.redact_identity`), secrets and credentials
masked, personal data kept. Span names stay redacted in full (``invoke_agent {agent}``
masks an agent id that is an e-mail address; the attribute keeps it).

It fails closed: a span it cannot redact is dropped (and counted), never exported as it is.
A span with nothing to mask is passed on as it is, without a copy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status
from opentelemetry.util.types import AttributeValue

from opsgate.redaction import Redactor
from opsgate.tracing import _attributes as A

__all__ = ["ACTOR_ATTRIBUTES", "RedactingExporter"]

#: Per actor field of `opsgate.redaction.ACTOR_FIELDS` (each has an entry), the span and
#: span-event attributes the trace recorder sets from it: their values are redacted as
#: identities (`Redactor.redact_identity`), whoever set them.
ACTOR_ATTRIBUTES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "invoker": (A.INVOKER, A.USER_ID),
        "agent_id": (A.GEN_AI_AGENT_ID, A.GEN_AI_AGENT_NAME),
        "approver": (A.APPROVAL_APPROVER,),
        # stage changes, tokens and budgets are audited but belong to no run: no span
        "actor": (),
        "name": (),
    }
)
_IDENTITY_KEYS = frozenset(key for keys in ACTOR_ATTRIBUTES.values() for key in keys)

_log = logging.getLogger("opsgate.tracing")

_Attrs = Mapping[str, AttributeValue]
# Attribute keys named in `_attributes` cannot hold anything to mask: skip them (values are
# always redacted, whoever set them).
_KNOWN_KEYS = frozenset(
    v for k, v in vars(A).items() if k.isupper() and isinstance(v, str) and "." in v
)


class _RedactedSpan(ReadableSpan):
    """A redacted copy that keeps the original's dropped counts (OTLP reports them)."""

    def __init__(self, original: ReadableSpan, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._dropped = (
            original.dropped_attributes,
            original.dropped_events,
            original.dropped_links,
        )

    @property
    def dropped_attributes(self) -> int:
        return self._dropped[0]

    @property
    def dropped_events(self) -> int:
        return self._dropped[1]

    @property
    def dropped_links(self) -> int:
        return self._dropped[2]


class RedactingExporter(SpanExporter):
    """A span exporter that redacts every span before ``inner`` sees it.

    Args:
        inner: The exporter that gets the redacted spans.
        redactor: What masks; share one per process (it is thread-safe and caches).

    Attributes:
        dropped: Spans dropped because redacting them failed (never exported unredacted).
        redacted: Spans that had something masked.
    """

    def __init__(self, inner: SpanExporter, redactor: Redactor) -> None:
        self.inner = inner
        self.redactor = redactor
        self.dropped = 0
        self.redacted = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Redact ``spans`` and export the copies with the inner exporter."""
        out: list[ReadableSpan] = []
        changed = dropped = 0
        for span in spans:
            try:
                copy = self.redact_span(span)
            except Exception:
                dropped += 1
                _log.exception("a span could not be redacted; it was dropped, not exported")
                continue
            changed += copy is not span
            out.append(copy)
        if changed or dropped:
            with self._lock:
                self.redacted += changed
                self.dropped += dropped
        if not out:
            return SpanExportResult.FAILURE if dropped else SpanExportResult.SUCCESS
        result = self.inner.export(out)
        return SpanExportResult.FAILURE if dropped else result

    def redact_span(self, span: ReadableSpan) -> ReadableSpan:
        """``span`` with everything redacted: a copy, or ``span`` when nothing changed."""
        text = self.redactor.redact_text
        name = text(span.name)
        attributes = self._attrs(span.attributes)
        events: list[Event] | None = None
        for i, event in enumerate(span.events):
            ev_name = text(event.name)
            ev_attrs = self._attrs(event.attributes)
            if ev_attrs is not None or ev_name is not event.name:
                if events is None:
                    events = list(span.events)
                events[i] = Event(
                    ev_name,
                    event.attributes if ev_attrs is None else ev_attrs,
                    event.timestamp,
                )
        links: list[Link] | None = None
        for i, link in enumerate(span.links):
            link_attrs = self._attrs(link.attributes)
            if link_attrs is not None:
                if links is None:
                    links = list(span.links)
                links[i] = Link(link.context, link_attrs)
        status = span.status
        if status.description:
            description = text(status.description)
            if description is not status.description:
                status = Status(status.status_code, description)
        if (
            name is span.name
            and attributes is None
            and events is None
            and links is None
            and status is span.status
        ):
            return span
        return _RedactedSpan(
            span,
            name=name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=dict(span.attributes or {}) if attributes is None else attributes,
            events=span.events if events is None else events,
            links=span.links if links is None else links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _attrs(self, attrs: _Attrs | None) -> dict[str, AttributeValue] | None:
        """Redacted attributes, or None when nothing needed masking."""
        if not attrs:
            return None
        text = self.redactor.redact_text
        identity = self.redactor.redact_identity
        out: dict[str, AttributeValue] | None = None
        for key, value in attrs.items():
            new_key = key if key in _KNOWN_KEYS else text(key)
            redact = identity if key in _IDENTITY_KEYS else text
            new_value: AttributeValue = value
            if isinstance(value, str):
                new_value = redact(value)
            elif isinstance(value, Sequence) and not isinstance(value, bytes):
                items = [redact(v) if isinstance(v, str) else v for v in value]
                if any(a is not b for a, b in zip(items, value, strict=True)):
                    new_value = tuple(items)
            if out is None:
                if new_key is key and new_value is value:
                    continue
                out = {}
                for k, v in attrs.items():  # the clean ones before this one
                    if k == key:
                        break
                    out[k] = v
            out[new_key] = new_value
        return out

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the inner exporter (one that buffers nothing answers None: done)."""
        done = self.inner.force_flush(timeout_millis)
        return True if done is None else bool(done)
