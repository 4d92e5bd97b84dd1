"""Actors in the traces: the attributes that carry who invoked, ran as and approved follow
the audit trail's rule (identity kept, secrets and credentials masked), while content and
every other attribute stay redacted (issue #11, item 2)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opsgate.gateway import (
    ApprovalAnswer,
    ApprovalRequest,
    CallbackApprover,
    Gateway,
    MappingSecretStore,
)
from opsgate.policy import load_policy
from opsgate.redaction import ACTOR_FIELDS, Redactor
from opsgate.tracing import RedactingExporter, TraceRecorder
from opsgate.tracing import attributes as A
from opsgate.tracing._redacting import ACTOR_ATTRIBUTES
from tests.conftest import BASE_POLICY, BELT

APPROVER = "ops.bob@example.com"
INVOKER = "alice.smith@corp.example.com"
AGENT = "refund-bot@agents.example.com"
CUSTOMER = "ana@example.com"
PAY_KEY = "k-123456-paykey"  # the gateway's secret: no credential pattern matches it
API_KEY = "sk-live-" + "0123456789abcdefghij"  # credential-shaped (assembled: not a leak)


class Traced:
    """A gateway with an in-process approver, traced through a RedactingExporter."""

    def __init__(self, approver: str) -> None:
        self.redactor = Redactor(secrets={"PAY_KEY": PAY_KEY})
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(
            SimpleSpanProcessor(RedactingExporter(self.memory, self.redactor))
        )
        self.tracer = TraceRecorder(self.provider, content=True, redactor=self.redactor)

        def answer(request: ApprovalRequest) -> ApprovalAnswer:
            return ApprovalAnswer(True, approver, f"checked; told {CUSTOMER}")

        self.gateway = Gateway(
            BELT,
            load_policy("p", BELT, text=BASE_POLICY % {"stage": "autonomous_in_scope"}),
            recorder=self.tracer,
            approver=CallbackApprover(answer),
            secrets=MappingSecretStore({"PAY_KEY": PAY_KEY}),
        )

    def run(self) -> list[ReadableSpan]:
        run = self.gateway.start_run(
            "wf",
            invoker=INVOKER,
            agent_id=AGENT,
            request=f"refund 60 on ORD-1 for {CUSTOMER}",
            deps={},
        )

        async def call() -> None:
            assert (await self.gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 60})).ok

        asyncio.run(call())
        self.gateway.finish(run)
        assert self.tracer.force_flush(5_000)
        return list(self.memory.get_finished_spans())

    def close(self) -> None:
        self.gateway.close()
        self.tracer.shutdown()
        self.provider.shutdown()


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced(APPROVER)
    yield t
    t.close()


def _one(spans: Sequence[ReadableSpan], operation: str) -> ReadableSpan:
    [span] = [s for s in spans if (s.attributes or {}).get(A.GEN_AI_OPERATION_NAME) == operation]
    return span


def test_the_tracing_actor_attributes_follow_the_one_actor_list() -> None:
    fields = {field for actors in ACTOR_FIELDS.values() for field in actors}
    assert set(ACTOR_ATTRIBUTES) == fields


def test_invoker_agent_and_approver_are_kept_content_is_not(traced: Traced) -> None:
    spans = traced.run()
    root = _one(spans, A.OP_INVOKE_AGENT)
    ra = root.attributes or {}
    assert ra[A.INVOKER] == INVOKER
    assert ra[A.GEN_AI_AGENT_ID] == AGENT and ra[A.GEN_AI_AGENT_NAME] == AGENT
    # content captured with the run (the request) is still masked
    assert CUSTOMER not in str(ra[A.GEN_AI_INPUT_MESSAGES])
    assert "[redacted:email]" in str(ra[A.GEN_AI_INPUT_MESSAGES])
    # the span name is a label, redacted in full; the attribute carries the agent
    assert root.name == "invoke_agent [redacted:email]"

    pay = _one(spans, A.OP_EXECUTE_TOOL)
    assert (pay.attributes or {})[A.APPROVAL_APPROVER] == APPROVER
    [granted] = [e for e in pay.events if A.APPROVAL_APPROVER in (e.attributes or {})]
    ev = granted.attributes or {}
    assert ev[A.APPROVAL_APPROVER] == APPROVER
    assert ev[A.APPROVAL_REASON] == "checked; told [redacted:email]"


def test_a_secret_as_the_approver_is_still_masked_in_traces() -> None:
    t = Traced(f"{APPROVER} {PAY_KEY} {API_KEY}")
    try:
        spans = t.run()
    finally:
        t.close()
    pay = _one(spans, A.OP_EXECUTE_TOOL)
    approver = (pay.attributes or {})[A.APPROVAL_APPROVER]
    # the gateway scrubs its own secret first; the exporter masks the credential
    assert isinstance(approver, str) and approver.startswith(f"{APPROVER} ")
    assert approver.endswith(" [redacted:api_key]") and PAY_KEY not in approver
    for span in spans:
        text = repr(span.attributes) + repr([e.attributes for e in span.events])
        assert PAY_KEY not in text and API_KEY not in text


def test_an_identity_attribute_set_by_anyone_is_redacted_as_an_identity() -> None:
    redactor = Redactor(secrets={"PAY_KEY": PAY_KEY})
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(memory, redactor)))
    span = provider.get_tracer("someone-else").start_span(
        "s",
        attributes={
            A.INVOKER: INVOKER,
            A.APPROVAL_APPROVER: (APPROVER, PAY_KEY),
            "user.email": INVOKER,  # not an actor attribute: content
        },
    )
    span.end()
    [out] = memory.get_finished_spans()
    attrs = out.attributes or {}
    assert attrs[A.INVOKER] == INVOKER
    assert attrs[A.APPROVAL_APPROVER] == (APPROVER, "[redacted:secret:PAY_KEY]")
    assert attrs["user.email"] == "[redacted:email]"
    provider.shutdown()
