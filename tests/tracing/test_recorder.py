"""`TraceRecorder` on real gateway runs: span tree, GenAI attributes, events, timing, errors,
content capture (off by default, redacted when on), and that it never breaks a run."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from opsgate.contracts import Toolbelt, ToolContext, tool
from opsgate.gateway import (
    ApprovalAnswer,
    ApprovalRequest,
    CallbackApprover,
    Gateway,
    MappingSecretStore,
    OutcomeStatus,
)
from opsgate.policy import CompiledPolicy, load_policy
from opsgate.recorder import Event, EventType, InMemoryRecorder
from opsgate.redaction import Redactor
from opsgate.tracing import RedactingExporter, TraceRecorder
from opsgate.tracing import attributes as A
from tests.conftest import BASE_POLICY, BELT

PAY_KEY = "sk-live-TOPSECRET"
DB_PASSWORD = "hunter2-correct-horse"  # known only to the redactor, not to the gateway
EMAILS = ("ana@example.com", "evil@attacker.test")  # content: masked
APPROVER = "carol@corp.example.com"  # an identity: kept


class FanOut:
    """Gives each event to several recorders (the audit trail and the traces, in the app)."""

    def __init__(self, *recorders: Any) -> None:
        self.recorders = recorders

    def record(self, event: Event) -> None:
        for recorder in self.recorders:
            recorder.record(event)

    async def settle(self, run_id: str | None = None) -> None:
        for recorder in self.recorders:
            await recorder.settle(run_id)


@tool(scope="read")
def leaky(order_id: str) -> str:
    """A badly written tool that echoes a credential and an address."""
    return f"order {order_id}: db password is {DB_PASSWORD}; customer ana@example.com"


@tool(scope="read")
def broken(order_id: str) -> str:
    """Always fails."""
    raise KeyError(f"no order {order_id} for ana@example.com")


@tool(scope="read", secrets=["PAY_KEY"])
def echo_key(ctx: ToolContext[Any], order_id: str) -> str:
    """Echoes the secret the gateway injected (the gateway scrubs it)."""
    return f"key={ctx.secrets['PAY_KEY']} order={order_id}"


TRACE_BELT = Toolbelt([*BELT, leaky, broken, echo_key])
TRACE_POLICY = BASE_POLICY.replace(
    "      slow: {timeout_seconds: 0.2}\n",
    "      slow: {timeout_seconds: 0.2}\n      leaky: {}\n      broken: {}\n      echo_key: {}\n",
)


def _policy(text: str = TRACE_POLICY) -> CompiledPolicy:
    return load_policy("trace-policy", TRACE_BELT, text=text % {"stage": "autonomous_in_scope"})


class Traced:
    """A gateway whose events go to an InMemoryRecorder and a TraceRecorder, whose spans go
    through a RedactingExporter to an InMemorySpanExporter."""

    def __init__(
        self,
        *,
        content: bool = False,
        policy: CompiledPolicy | None = None,
        background: bool = True,
    ) -> None:
        self.redactor = Redactor(secrets={"DB_PASSWORD": DB_PASSWORD, "PAY_KEY": PAY_KEY})
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(
            SimpleSpanProcessor(RedactingExporter(self.memory, self.redactor))
        )
        self.tracer = TraceRecorder(
            self.provider, content=content, redactor=self.redactor, background=background
        )
        self.events = InMemoryRecorder()
        self.gateway = Gateway(
            TRACE_BELT,
            policy or _policy(),
            recorder=FanOut(self.events, self.tracer),
            secrets=MappingSecretStore({"PAY_KEY": PAY_KEY}),
            approver=CallbackApprover(_approve_below_65),
        )

    def spans(self) -> list[ReadableSpan]:
        assert self.tracer.force_flush(5_000)  # the worker has built every span
        return list(self.memory.get_finished_spans())

    def one(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def close(self) -> None:
        self.gateway.close()
        self.tracer.shutdown()
        self.provider.shutdown()


def _approve_below_65(request: ApprovalRequest) -> ApprovalAnswer:
    return ApprovalAnswer(request.args["amount"] < 65, APPROVER, "checked")


@pytest.fixture(params=["background", "inline"])
def traced(request: pytest.FixtureRequest) -> Iterator[Traced]:
    t = Traced(background=request.param == "background")
    yield t
    t.close()


@pytest.fixture
def traced_content() -> Iterator[Traced]:
    t = Traced(content=True)
    yield t
    t.close()


def _ns(at: float) -> int:
    return int(at * 1e9)


async def _full_run(t: Traced) -> Any:
    """One run with every kind of call: ok, denied, refused, failing, approved, rejected."""
    run = t.gateway.start_run(
        "wf",
        invoker="alice",
        agent_id="bot",
        request="Handle ORD-1 for ana@example.com: refund 60 or 70",
        deps={},
    )
    gw = t.gateway
    assert gw.step(run)
    outcomes = {
        "lookup": await gw.call(run, "lookup", {"order_id": "ORD-1"}, call_id="c-lookup"),
        "send": await gw.call(
            run, "send", {"to": "evil@attacker.test", "body": "hi"}, call_id="c-send"
        ),
        "nope": await gw.call(run, "nope", '{"x": 1}', call_id="c-nope"),
        "broken": await gw.call(run, "broken", {"order_id": "ORD-1"}, call_id="c-broken"),
        "pay60": await gw.call(run, "pay", {"order_id": "ORD-1", "amount": 60}, call_id="c-p60"),
        "pay70": await gw.call(run, "pay", {"order_id": "ORD-1", "amount": 70}, call_id="c-p70"),
        "leaky": await gw.call(run, "leaky", {"order_id": "ORD-1"}, call_id="c-leaky"),
        "echo": await gw.call(run, "echo_key", {"order_id": "ORD-1"}, call_id="c-echo"),
    }
    gw.add_cost(run, 0.25)
    gw.finish(run, output="refunded ana@example.com")
    return run, outcomes


def _all_text(spans: Sequence[ReadableSpan]) -> str:
    """Everything a span carries, as text (names, attributes, events, status)."""
    parts: list[str] = []
    for s in spans:
        parts += [s.name, repr(dict(s.attributes or {})), str(s.status.description)]
        for e in s.events:
            parts += [e.name, repr(dict(e.attributes or {}))]
    return "\n".join(parts)


async def test_a_run_is_an_invoke_agent_span_with_execute_tool_children(traced: Traced) -> None:
    run, outcomes = await _full_run(traced)
    assert outcomes["lookup"].ok and outcomes["pay60"].ok
    assert outcomes["send"].status is OutcomeStatus.DENIED
    assert outcomes["pay70"].status is OutcomeStatus.APPROVAL_DENIED
    spans = traced.spans()
    assert traced.tracer.failures == 0 and traced.tracer.open_runs == 0
    root = traced.one("invoke_agent bot")
    tools = [s for s in spans if s.name.startswith("execute_tool ")]
    assert sorted(s.name for s in tools) == sorted(
        f"execute_tool {n}"
        for n in ("lookup", "send", "nope", "broken", "pay", "pay", "leaky", "echo_key")
    )
    guards = [s for s in spans if s.name == "apply_guardrail opsgate tool_call"]
    assert len(spans) == 1 + len(tools) + len(guards)
    # each decision of the gate is a guardrail span under the call it guards
    by_id = {s.context.span_id: s for s in tools if s.context is not None}
    decided = sorted(by_id[g.parent.span_id].name for g in guards if g.parent is not None)
    assert decided == sorted(s.name for s in tools)  # every call was decided, once
    send_guard = next(
        g for g in guards if g.parent and by_id[g.parent.span_id].name == "execute_tool send"
    )
    ga = send_guard.attributes or {}
    assert ga[A.GEN_AI_OPERATION_NAME] == "apply_guardrail"
    assert ga[A.OPENINFERENCE_SPAN_KIND] == "GUARDRAIL"
    assert ga[A.GEN_AI_SECURITY_DECISION_TYPE] == "deny"
    assert ga[A.GEN_AI_SECURITY_TARGET_TYPE] == "tool_call"
    assert (
        ga[A.GEN_AI_SECURITY_DECISION_CODE]
        == (traced.one("execute_tool send").attributes or {})[A.DECISION_REASON]
    )

    # The tree: one trace, every tool span a child of the run span.
    assert root.kind is SpanKind.INTERNAL and root.parent is None
    assert root.context is not None
    for s in tools:
        assert s.kind is SpanKind.INTERNAL
        assert s.parent is not None and s.parent.span_id == root.context.span_id
        assert s.context is not None and s.context.trace_id == root.context.trace_id

    # The run span's GenAI attributes.
    ra = root.attributes or {}
    assert ra[A.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert ra[A.GEN_AI_AGENT_ID] == "bot" and ra[A.GEN_AI_AGENT_NAME] == "bot"
    assert ra[A.GEN_AI_WORKFLOW_NAME] == "wf"
    assert ra[A.GEN_AI_CONVERSATION_ID] == run.run_id
    assert ra[A.POLICY_VERSION] == traced.gateway.policy.version
    assert ra[A.INVOKER] == "alice"
    # what Phoenix and Langfuse read: span kind, the user and the session
    assert ra[A.OPENINFERENCE_SPAN_KIND] == "AGENT"
    assert ra[A.USER_ID] == "alice" and ra[A.SESSION_ID] == run.run_id
    for s in tools:
        assert (s.attributes or {})[A.OPENINFERENCE_SPAN_KIND] == "TOOL"
    assert ra[A.RUN_STATUS] == "completed" and ra[A.RUN_REASON] == "done"
    assert ra[A.COST_USD] == pytest.approx(0.25)
    assert ra[A.RUN_TOOL_CALLS] == 8 and ra[A.RUN_DENIALS] == 2 and ra[A.RUN_ERRORS] == 1
    assert ra[A.RUN_STEPS] == 1 and ra[A.RUN_REFUSALS] == 1
    assert root.status.status_code is StatusCode.UNSET

    # Every tool span's GenAI attributes.
    for s in tools:
        sa = s.attributes or {}
        assert sa[A.GEN_AI_OPERATION_NAME] == "execute_tool"
        assert sa[A.GEN_AI_TOOL_NAME] == s.name.removeprefix("execute_tool ")
        assert sa[A.GEN_AI_TOOL_TYPE] == "function"
        assert sa[A.GEN_AI_CONVERSATION_ID] == run.run_id
        assert str(sa[A.GEN_AI_TOOL_CALL_ID]).startswith("c-")

    by_call = {str((s.attributes or {})[A.GEN_AI_TOOL_CALL_ID]): s for s in tools}
    ok = by_call["c-lookup"]
    assert ok.status.status_code is StatusCode.UNSET
    assert A.ERROR_TYPE not in (ok.attributes or {})
    assert (ok.attributes or {})[A.DECISION] == "allow"
    assert (ok.attributes or {})[A.DECISION_REASON] == "allowed"
    assert (ok.attributes or {})[A.DECISION_RULE] == "workflows.wf.tools.lookup"
    assert (ok.attributes or {})[A.PROVENANCE_TRUST] == "trusted"

    # Denials and failures: error.type and status ERROR.
    expected_errors = {
        "c-send": "arg_constraint",
        "c-nope": "unknown_tool",
        "c-broken": "KeyError",
        "c-p70": "approval_denied",
    }
    for call_id, error_type in expected_errors.items():
        s = by_call[call_id]
        assert (s.attributes or {})[A.ERROR_TYPE] == error_type, call_id
        assert s.status.status_code is StatusCode.ERROR, call_id
    for call_id in ("c-lookup", "c-p60", "c-leaky", "c-echo"):
        assert by_call[call_id].status.status_code is StatusCode.UNSET
    assert (by_call["c-send"].attributes or {})[A.DECISION] == "deny"
    assert (by_call["c-send"].attributes or {})[A.DECISION_ARGUMENT] == "to"

    # Events: decisions on every tool span, approvals, context reads and steps on the run.
    for s in tools:
        assert s.events[0].name == "opsgate.decision"
    assert [e.name for e in by_call["c-p60"].events] == [
        "opsgate.decision",
        "opsgate.approval_requested",
        "opsgate.approval_granted",
    ]
    assert [e.name for e in by_call["c-p70"].events][-1] == "opsgate.approval_denied"
    assert (by_call["c-p60"].attributes or {})[A.DECISION] == "needs_approval"
    assert A.APPROVAL_APPROVER in (by_call["c-p60"].attributes or {})
    root_events = [e.name for e in root.events]
    assert root_events[0] == "opsgate.context_read" and "opsgate.step" in root_events
    assert root_events.count("opsgate.write_performed") == 1  # pay 60
    read = root.events[0].attributes or {}
    assert read[A.PROVENANCE_SOURCE] == "request" and read[A.PROVENANCE_TRUST] == "trusted"


async def test_span_times_are_the_events_times_in_order(traced: Traced) -> None:
    run, _ = await _full_run(traced)
    events = traced.events.of_run(run.run_id)
    root = traced.one("invoke_agent bot")
    assert root.start_time == _ns(events[0].at)
    assert root.end_time == _ns(events[-1].at)
    tools = sorted(
        (s for s in traced.spans() if s.name.startswith("execute_tool ")),
        key=lambda s: s.start_time or 0,
    )
    proposed = [e for e in events if e.type is EventType.TOOL_CALL_PROPOSED]
    assert [s.start_time for s in tools] == [_ns(e.at) for e in proposed]
    assert [(s.attributes or {})[A.GEN_AI_TOOL_CALL_ID] for s in tools] == [
        e.data["call_id"] for e in proposed
    ]
    assert root.start_time is not None and root.end_time is not None
    previous_end = root.start_time
    for s in tools:  # sequential calls: each inside the run, after the one before
        assert s.start_time is not None and s.end_time is not None
        assert previous_end <= s.start_time <= s.end_time <= root.end_time
        previous_end = s.end_time
        for e in s.events:
            assert s.start_time <= e.timestamp <= s.end_time
    stamps = [e.timestamp for e in root.events]
    assert stamps == sorted(stamps) and root.start_time <= stamps[0] <= stamps[-1]


async def test_no_secret_or_email_leaves_and_content_is_off_by_default(traced: Traced) -> None:
    await _full_run(traced)
    text = _all_text(traced.spans())
    for needle in (PAY_KEY, DB_PASSWORD, *EMAILS):
        assert needle not in text, needle
    for s in traced.spans():
        attrs = s.attributes or {}
        for key in (
            A.GEN_AI_TOOL_CALL_ARGUMENTS,
            A.GEN_AI_TOOL_CALL_RESULT,
            A.GEN_AI_INPUT_MESSAGES,
            A.GEN_AI_OUTPUT_MESSAGES,
        ):
            assert key not in attrs, (s.name, key)
        # without content, a status says at most a reason code (never a message)
        assert s.status.description in (None, (s.attributes or {}).get(A.ERROR_TYPE))
        for e in s.events:
            ev = e.attributes or {}
            assert A.DECISION_MESSAGE not in ev and A.APPROVAL_REASON not in ev
    # The approver's identity is kept (an e-mail address, but an actor's: not content).
    pay = [s for s in traced.spans() if s.name == "execute_tool pay"]
    assert {(s.attributes or {})[A.APPROVAL_APPROVER] for s in pay} == {APPROVER}


async def test_content_capture_records_arguments_and_results_redacted(
    traced_content: Traced,
) -> None:
    t = traced_content
    run, _ = await _full_run(t)
    spans = t.spans()
    text = _all_text(spans)
    for needle in (PAY_KEY, DB_PASSWORD, *EMAILS):
        assert needle not in text, needle

    by_call = {
        str((s.attributes or {}).get(A.GEN_AI_TOOL_CALL_ID)): s
        for s in spans
        if s.name.startswith("execute_tool ")
    }
    lookup = by_call["c-lookup"].attributes or {}
    assert lookup[A.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"order_id":"ORD-1"}'
    assert lookup[A.GEN_AI_TOOL_CALL_RESULT] == (
        '{"order_id":"ORD-1","total":120.0,"email":"[redacted:email]"}'
    )
    send = by_call["c-send"]
    assert (send.attributes or {})[A.GEN_AI_TOOL_CALL_ARGUMENTS] == (
        '{"to":"[redacted:email]","body":"hi"}'
    )
    assert "[redacted:email]" in str(send.status.description)
    assert "[redacted:email]" in str((send.events[0].attributes or {})[A.DECISION_MESSAGE])
    leaky = by_call["c-leaky"].attributes or {}
    assert leaky[A.GEN_AI_TOOL_CALL_RESULT] == (
        "order ORD-1: db password is [redacted:secret:DB_PASSWORD]; customer [redacted:email]"
    )
    echo = by_call["c-echo"].attributes or {}
    # The gateway scrubbed its own secret to `[secret PAY_KEY]` before the recorder saw it.
    assert str(echo[A.GEN_AI_TOOL_CALL_RESULT]).startswith("key=[secret PAY_KEY]")
    broken = by_call["c-broken"]
    assert "KeyError" in str(broken.status.description)
    assert "[redacted:email]" in str(broken.status.description)
    p70 = by_call["c-p70"]
    assert (p70.events[-1].attributes or {})[A.APPROVAL_REASON] == "checked"

    root = t.one("invoke_agent bot").attributes or {}
    assert root[A.GEN_AI_INPUT_MESSAGES] == (
        '[{"role":"user","parts":[{"type":"text","content":'
        '"Handle ORD-1 for [redacted:email]: refund 60 or 70"}]}]'
    )
    assert "refunded [redacted:email]" in str(root[A.GEN_AI_OUTPUT_MESSAGES])
    assert root[A.GEN_AI_CONVERSATION_ID] == run.run_id


async def test_retries_and_escalation_on_the_retry_cap(traced: Traced) -> None:
    gw = traced.gateway
    run = gw.start_run("wf", invoker="alice", agent_id="bot", request="wait")
    outcome = await gw.call(run, "slow", {"seconds": 30}, call_id="c-slow")
    assert outcome.status is OutcomeStatus.ESCALATED

    slow = traced.one("execute_tool slow")
    assert [e.name for e in slow.events] == [
        "opsgate.decision",
        "opsgate.tool_retry",
        "opsgate.tool_retry",
    ]
    retry = slow.events[1].attributes or {}
    assert retry[A.TOOL_ATTEMPTS] == 1 and retry[A.ERROR_TYPE] == "ToolTimeout"
    assert (slow.attributes or {})[A.ERROR_TYPE] == "ToolTimeout"
    assert (slow.attributes or {})[A.TOOL_ATTEMPTS] == 3
    assert slow.status.status_code is StatusCode.ERROR

    root = traced.one("invoke_agent bot")
    assert [e.name for e in root.events][-1] == "opsgate.escalated"
    escalated = root.events[-1].attributes or {}
    assert escalated[A.ESCALATION_REASON] == "cap_exceeded"
    assert escalated[A.DECISION_CAP] == "max_retries"
    assert (root.attributes or {})[A.RUN_STATUS] == "escalated"
    # the escalation's reason, as the module's contract says, not the status
    assert (root.attributes or {})[A.ERROR_TYPE] == "cap_exceeded"
    assert root.status.description == "cap_exceeded"
    assert root.status.status_code is StatusCode.ERROR
    assert traced.tracer.open_runs == 0 and traced.tracer.failures == 0


async def test_an_expired_approval_ends_its_call_span_with_the_escalation() -> None:
    t = Traced()

    async def never(request: ApprovalRequest) -> ApprovalAnswer:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    t.gateway.approver = CallbackApprover(never)
    t.gateway.approval_timeout_s = 0.05
    run = t.gateway.start_run("wf", invoker="a", agent_id="bot", request="ORD-1 refund 90")
    outcome = await t.gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 90})
    assert outcome.status is OutcomeStatus.ESCALATED
    pay = t.one("execute_tool pay")
    assert (pay.attributes or {})[A.ERROR_TYPE] == "approval_expired"
    assert pay.status.status_code is StatusCode.ERROR
    assert [e.name for e in pay.events][-1] == "opsgate.escalated"
    assert t.one("invoke_agent bot").end_time is not None
    t.close()


async def test_cap_denial_ends_the_call_and_the_run() -> None:
    text = TRACE_POLICY.replace("max_identical_calls: 5", "max_identical_calls: 1")
    t = Traced(policy=_policy(text))
    run = t.gateway.start_run("wf", invoker="a", agent_id="bot", request="ORD-1")
    await t.gateway.call(run, "lookup", {"order_id": "ORD-1"})
    outcome = await t.gateway.call(run, "lookup", {"order_id": "ORD-1"})
    assert outcome.status is OutcomeStatus.ESCALATED
    second = sorted(
        (s for s in t.spans() if s.name == "execute_tool lookup"), key=lambda s: s.start_time or 0
    )[1]
    assert (second.attributes or {})[A.ERROR_TYPE] == "cap_exceeded"
    assert (t.one("invoke_agent bot").attributes or {})[A.RUN_STATUS] == "escalated"
    # A call after the end is still traced, under the ended run's span.
    late = await t.gateway.call(run, "lookup", {"order_id": "ORD-2"}, call_id="late")
    assert late.status is OutcomeStatus.REFUSED
    (late_span,) = [
        s for s in t.spans() if (s.attributes or {}).get(A.GEN_AI_TOOL_CALL_ID) == "late"
    ]
    root = t.one("invoke_agent bot")
    assert late_span.parent is not None and root.context is not None
    assert late_span.parent.span_id == root.context.span_id
    assert (late_span.attributes or {})[A.ERROR_TYPE] == "run_not_active"
    t.close()


async def test_record_chat_is_a_client_child_of_the_run(traced: Traced) -> None:
    gw = traced.gateway
    run = gw.start_run("wf", invoker="a", agent_id="bot", request="hi")
    t0 = time.time_ns()
    traced.tracer.record_chat(run.run_id, "gpt-4o", "openai", t0, t0 + 5_000_000, 812, 64, 0.0031)
    traced.tracer.record_chat(
        run.run_id, "claude-x", "anthropic", t0, t0 + 1, None, None, None, error_type="429"
    )
    gw.finish(run)
    root = traced.one("invoke_agent bot")
    chat = traced.one("chat gpt-4o")
    assert chat.kind is SpanKind.CLIENT
    assert root.context is not None and chat.parent is not None
    assert chat.parent.span_id == root.context.span_id
    assert (chat.start_time, chat.end_time) == (t0, t0 + 5_000_000)
    ca = chat.attributes or {}
    assert ca[A.GEN_AI_OPERATION_NAME] == "chat"
    assert ca[A.GEN_AI_PROVIDER_NAME] == "openai" and ca[A.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert ca[A.GEN_AI_USAGE_INPUT_TOKENS] == 812 and ca[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 64
    assert ca[A.COST_USD] == pytest.approx(0.0031)
    assert ca[A.GEN_AI_CONVERSATION_ID] == run.run_id
    assert chat.status.status_code is StatusCode.UNSET
    failed = traced.one("chat claude-x")
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})[A.ERROR_TYPE] == "429"
    assert A.GEN_AI_USAGE_INPUT_TOKENS not in (failed.attributes or {})


# -- never breaking a run ------------------------------------------------------------------------


class RaisingExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("collector down")


class RaisingProcessor(SpanProcessor):
    """A span processor that fails on every span: the worst a tracing pipeline can do."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        raise RuntimeError("processor broken on start")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("processor broken on end")


@pytest.mark.parametrize("broken", ["exporter", "processor"])
async def test_record_never_raises_and_the_run_goes_on(
    make_policy: Callable[..., CompiledPolicy], broken: str
) -> None:
    provider = TracerProvider()
    exporter = RaisingExporter()
    if broken == "exporter":
        provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(exporter, Redactor())))
    else:
        provider.add_span_processor(RaisingProcessor())
    tracer = TraceRecorder(provider)
    events = InMemoryRecorder()
    gw = Gateway(
        BELT,
        make_policy(),
        recorder=FanOut(events, tracer),
        secrets=MappingSecretStore({"PAY_KEY": PAY_KEY}),
    )
    run = gw.start_run("wf", invoker="a", agent_id="bot", request="ORD-1")
    assert (await gw.call(run, "lookup", {"order_id": "ORD-1"})).ok
    assert (await gw.call(run, "nope", {})).status is OutcomeStatus.REFUSED
    tracer.record_chat(run.run_id, "m", "p", 1, 2, 1, 1, 0.0)
    gw.finish(run)
    assert tracer.force_flush(5_000)
    assert [e.type for e in events][-1] is EventType.RUN_ENDED
    if broken == "exporter":
        assert exporter.calls >= 4  # spans reached it; the SDK contained its errors
    else:
        assert tracer.failures >= 3 and "processor broken" in tracer.last_failure
    tracer.shutdown()
    gw.close()


def test_malformed_events_are_counted_not_raised() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = TraceRecorder(provider, background=False)
    now = time.time()
    tracer.record(Event(EventType.RUN_STARTED, "r1", 0, now, {"agent_id": "bot"}))
    tracer.record(Event(EventType.STEP, "r1", 1, now, {"step": "not a number"}))
    tracer.record(Event(EventType.TOOL_RESULT, "r1", 2, now, {"call_id": None}))  # no span
    tracer.record(Event(EventType.RUN_ENDED, "r1", 3, now, {"status": "completed"}))
    assert tracer.failures == 1 and tracer.last_failure.startswith("ValueError")
    assert [s.name for s in memory.get_finished_spans()] == ["invoke_agent bot"]


def test_unfinished_runs_are_bounded_and_ended_on_shutdown() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = TraceRecorder(provider, max_open_runs=2, own_provider=True, background=False)
    now = time.time()
    for i in range(3):
        tracer.record(Event(EventType.RUN_STARTED, f"r{i}", 0, now + i, {"agent_id": f"a{i}"}))
    tracer.record(
        Event(EventType.TOOL_CALL_PROPOSED, "r2", 1, now + 3, {"call_id": "c", "tool": "t"})
    )
    assert tracer.open_runs == 2
    (evicted,) = memory.get_finished_spans()
    assert evicted.name == "invoke_agent a0"
    assert (evicted.attributes or {})[A.ERROR_TYPE] == "abandoned"
    tracer.shutdown()
    names = sorted(s.name for s in memory.get_finished_spans())
    assert names == ["execute_tool t", "invoke_agent a0", "invoke_agent a1", "invoke_agent a2"]
    assert all(s.status.status_code is StatusCode.ERROR for s in memory.get_finished_spans())
    assert tracer.open_runs == 0


def test_concurrent_runs_keep_their_own_trees() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = TraceRecorder(provider)
    gw = Gateway(BELT, _policy(), recorder=tracer)

    def one(i: int) -> None:
        run = gw.start_run("wf", invoker="a", agent_id=f"bot{i}", request=f"ORD-{i}")
        for _ in range(3):
            gw.call_sync(run, "lookup", {"order_id": f"ORD-{i}"})
        gw.finish(run)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert tracer.force_flush(5_000)
    spans = memory.get_finished_spans()
    roots = {s.context.span_id: s for s in spans if s.name.startswith("invoke_agent")}
    assert len(roots) == 8 and tracer.failures == 0
    for s in spans:
        if s.name.startswith("execute_tool"):
            assert s.parent is not None
            root = roots[s.parent.span_id]
            run_id = (root.attributes or {})[A.GEN_AI_CONVERSATION_ID]
            assert (s.attributes or {})[A.GEN_AI_CONVERSATION_ID] == run_id
    # per run: the run, three lookups and their three guardrail decisions
    assert len(spans) == 8 * 7
    tracer.shutdown()
    gw.close()


class StallingProcessor(SpanProcessor):
    """Holds the worker inside the SDK until released: a pipeline that has stalled."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.entered.set()
        self.release.wait(10)


def test_a_stalled_pipeline_never_blocks_the_run_and_drops_beyond_the_queue() -> None:
    memory = InMemorySpanExporter()
    stall = StallingProcessor()
    provider = TracerProvider()
    provider.add_span_processor(stall)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = TraceRecorder(provider, max_queue=10)
    now = time.time()
    tracer.record(Event(EventType.RUN_STARTED, "r", 0, now, {"agent_id": "bot"}))
    assert stall.entered.wait(5)  # the worker is stuck in start_span
    t0 = time.perf_counter()
    for i in range(1, 31):
        tracer.record(Event(EventType.STEP, "r", i, now + i / 1000, {"step": i}))
    tracer.record_chat("r", "m", "p", 1, 2, None, None, None)
    assert time.perf_counter() - t0 < 0.5  # nothing waited for the worker
    assert tracer.dropped == 21  # 10 queued, 20 steps and the chat dropped
    assert tracer.force_flush(100) is False  # the worker is still stuck
    stall.release.set()
    assert tracer.force_flush(5_000)
    tracer.record(Event(EventType.RUN_ENDED, "r", 31, now + 1, {"status": "completed"}))
    assert tracer.force_flush(5_000)
    (root,) = memory.get_finished_spans()
    assert [e.name for e in root.events] == ["opsgate.step"] * 10
    tracer.shutdown()
    tracer.record(Event(EventType.STEP, "r", 32, now + 2, {"step": 32}))
    assert tracer.dropped == 22 and tracer.failures == 0


def test_shutdown_builds_what_was_queued_then_ends_open_runs() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = TraceRecorder(provider, own_provider=True)
    now = time.time()
    tracer.record(Event(EventType.RUN_STARTED, "done", 0, now, {"agent_id": "a"}))
    tracer.record(Event(EventType.RUN_ENDED, "done", 1, now + 1, {"status": "completed"}))
    tracer.record(Event(EventType.RUN_STARTED, "open", 0, now, {"agent_id": "b"}))
    tracer.shutdown()
    tracer.shutdown()  # idempotent
    spans = {s.name: s for s in memory.get_finished_spans()}
    assert set(spans) == {"invoke_agent a", "invoke_agent b"}
    assert spans["invoke_agent a"].status.status_code is StatusCode.UNSET
    assert (spans["invoke_agent b"].attributes or {})[A.ERROR_TYPE] == "abandoned"


def test_each_run_is_its_own_trace_whatever_span_is_current() -> None:
    t = Traced(background=False)
    app = TracerProvider().get_tracer("the-app")
    with app.start_as_current_span("POST /tickets"):
        run = t.gateway.start_run("wf", invoker="a", agent_id="bot", request="ORD-1")
        t.gateway.call_sync(run, "lookup", {"order_id": "ORD-1"})
        t.gateway.finish(run)
    root = t.one("invoke_agent bot")
    assert root.parent is None
    assert t.one("execute_tool lookup").parent is not None
    t.close()


def test_model_calls_and_plans_become_chat_and_plan_spans() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from opsgate.recorder import Event, EventType
    from opsgate.tracing import TraceRecorder

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = TraceRecorder(provider, background=False)
    recorder.record(
        Event(
            EventType.RUN_STARTED,
            "run-9",
            0,
            100.0,
            {"agent_id": "planner-bot", "workflow": "wf", "invoker": "u"},
        )
    )
    recorder.record(
        Event(
            EventType.MODEL_CALL,
            "run-9",
            1,
            101.0,
            {
                "model": "small",
                "provider": "llama.cpp",
                "latency_s": 0.5,
                "input_tokens": 120,
                "output_tokens": 30,
                "cost_usd": 0.001,
                "error_type": None,
            },
        )
    )
    recorder.record(Event(EventType.PLAN, "run-9", 2, 101.5, {"steps": [{"tool": "x"}]}))
    recorder.record(Event(EventType.RUN_ENDED, "run-9", 3, 102.0, {"status": "completed"}))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    chat = spans["chat small"]
    assert chat.attributes is not None
    assert chat.attributes["gen_ai.usage.input_tokens"] == 120
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.end_time is not None and chat.start_time is not None
    assert chat.end_time - chat.start_time == 500_000_000
    plan = spans["plan planner-bot"]
    assert plan.attributes is not None and plan.attributes["gen_ai.operation.name"] == "plan"
    root = spans["invoke_agent planner-bot"]
    assert chat.parent is not None and chat.parent.span_id == root.context.span_id
    assert plan.parent is not None and plan.parent.span_id == root.context.span_id


def _chat_spans(content: bool, redactor: Redactor | None = None) -> dict[str, ReadableSpan]:
    from opsgate.models import Message, ModelResponse, ToolCall, Usage, genai_messages

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = TraceRecorder(provider, background=False, content=content, redactor=redactor)
    recorder.record(
        Event(EventType.RUN_STARTED, "r", 0, 100.0, {"agent_id": "bot", "workflow": "wf"})
    )
    answer = ModelResponse(
        None,
        (ToolCall("c1", "lookup", '{"order_id": "ORD-1"}'),),
        Usage(9, 3),
        "tool_calls",
        "gpt-4o-mini-2024-07-18",
        0.2,
        1,
        (0.2,),
    )
    asked = [Message.system("Be brief."), Message.user("Where is ORD-1? mail ana@example.com")]
    data = {
        "role": "act",
        "model": "small",
        "provider": "openai",
        "latency_s": 0.2,
        "input_tokens": 9,
        "output_tokens": 3,
        "cost_usd": 0.0001,
        "error_type": None,
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "finish_reason": "tool_calls",
        "temperature": 0.0,
        "max_tokens": 256,
    }
    debug = genai_messages(asked, answer)
    recorder.record(Event(EventType.MODEL_CALL, "r", 1, 101.0, data, lambda: debug))
    recorder.record(Event(EventType.RUN_ENDED, "r", 2, 102.0, {"status": "completed"}))
    return {s.name: s for s in exporter.get_finished_spans()}


def test_a_chat_span_is_named_by_the_provider_model_id_and_carries_its_messages() -> None:
    chat = _chat_spans(content=True)["chat gpt-4o-mini"]
    attrs = chat.attributes or {}
    assert attrs[A.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert attrs[A.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attrs[A.LLM_MODEL_NAME] == "gpt-4o-mini-2024-07-18"  # what Phoenix prices by
    assert attrs[A.ROUTER_MODEL] == "small" and attrs[A.MODEL_ROLE] == "act"
    assert attrs[A.GEN_AI_REQUEST_TEMPERATURE] == 0.0
    assert attrs[A.GEN_AI_REQUEST_MAX_TOKENS] == 256
    assert tuple(attrs[A.GEN_AI_RESPONSE_FINISH_REASONS]) == ("tool_calls",)  # type: ignore[arg-type]
    assert '"Be brief."' in str(attrs[A.GEN_AI_INPUT_MESSAGES])
    assert attrs[A.INPUT_MIME_TYPE] == A.MIME_JSON
    assert attrs["llm.input_messages.1.message.role"] == "user"
    assert "Where is ORD-1?" in str(attrs["llm.input_messages.1.message.content"])
    call = "llm.output_messages.0.message.tool_calls.0.tool_call"
    assert attrs[f"{call}.function.name"] == "lookup"
    assert attrs[f"{call}.function.arguments"] == '{"order_id": "ORD-1"}'
    assert '"tool_call"' in str(attrs[A.GEN_AI_OUTPUT_MESSAGES])


def test_a_chat_spans_messages_are_content_off_by_default_and_redacted_when_on() -> None:
    attrs = _chat_spans(content=False)["chat gpt-4o-mini"].attributes or {}
    assert not [k for k in attrs if "messages" in k or k in (A.INPUT_VALUE, A.OUTPUT_VALUE)]
    assert attrs[A.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"  # not content
    redacted = _chat_spans(content=True, redactor=Redactor())["chat gpt-4o-mini"]
    text = repr(dict(redacted.attributes or {}))
    assert "ana@example.com" not in text and "Where is ORD-1?" in text


def test_a_batch_is_traced_like_its_events_one_by_one_and_counts_against_the_queue() -> None:
    """`record_batch` (the audit recorder's hand-off) builds the same spans as `record`,
    in order; a stalled worker drops whole batches beyond `max_queue` events, counting
    each event, and never makes the caller wait."""
    now = time.time()
    events = [
        Event(EventType.RUN_STARTED, "r", 0, now, {"agent_id": "bot"}),
        Event(EventType.TOOL_CALL_PROPOSED, "r", 1, now + 0.1, {"tool": "t", "call_id": "c"}),
        Event(EventType.TOOL_RESULT, "r", 2, now + 0.2, {"call_id": "c", "trust": "trusted"}),
        Event(EventType.RUN_ENDED, "r", 3, now + 0.3, {"status": "completed"}),
    ]
    shapes = []
    for batched in (False, True):
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = TraceRecorder(provider)
        if batched:
            tracer.record_batch(events[:2])
            tracer.record_batch(events[2:])
        else:
            for event in events:
                tracer.record(event)
        assert tracer.force_flush(5_000)
        shapes.append(
            [
                (s.name, s.start_time, s.end_time, s.status.status_code)
                for s in memory.get_finished_spans()
            ]
        )
        tracer.shutdown()
        tracer.record_batch(events)  # after shutdown: dropped, counted
        assert tracer.dropped == len(events) and tracer.failures == 0
    assert shapes[0] == shapes[1] and len(shapes[0]) == 2

    stall = StallingProcessor()
    provider = TracerProvider()
    provider.add_span_processor(stall)
    tracer = TraceRecorder(provider, max_queue=5)
    tracer.record(events[0])
    assert stall.entered.wait(5)
    t0 = time.perf_counter()
    steps = [Event(EventType.STEP, "r", i, now, {"step": i}) for i in range(1, 4)]
    for _ in range(3):
        tracer.record_batch(steps)  # 3 + 3 queued (the bound is reached), 3 dropped
    assert time.perf_counter() - t0 < 0.5
    assert tracer.dropped == 3
    stall.release.set()
    assert tracer.force_flush(5_000)
    tracer.shutdown()
