"""The gateway: one decision event per call, refusals, tool faults, caps, secrets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsgate.contracts import Toolbelt, ToolContext, tool
from opsgate.errors import PolicyError, ToolTransientError
from opsgate.gateway import (
    CallbackApprover,
    Gateway,
    MappingSecretStore,
    OutcomeStatus,
    RunStatus,
)
from opsgate.policy import CompiledPolicy, Reason, load_policy
from opsgate.provenance import ContextItem
from opsgate.recorder import EventType, InMemoryRecorder
from tests.conftest import BELT


def _start(gateway: Gateway, **kwargs: Any) -> Any:
    kwargs.setdefault("invoker", "alice")
    kwargs.setdefault("agent_id", "bot")
    kwargs.setdefault("request", "Handle ORD-1 for ana@example.com")
    return gateway.start_run("wf", **kwargs)


def _types(recorder: InMemoryRecorder, run_id: str) -> list[str]:
    return [e.type.value for e in recorder.of_run(run_id)]


async def test_allowed_call_runs_and_is_recorded(
    make_gateway: Callable[..., Gateway], recorder: InMemoryRecorder
) -> None:
    gateway = make_gateway()
    run = _start(gateway)
    outcome = await gateway.call(run, "lookup", '{"order_id": "ORD-1"}', call_id="c1")
    assert outcome.ok and outcome.result["total"] == 120.0
    assert outcome.decision.reason is Reason.ALLOWED
    gateway.finish(run)
    assert _types(recorder, run.run_id) == [
        "run_started",
        "context_read",
        "tool_call_proposed",
        "decision",
        "tool_result",
        "run_ended",
    ]
    seqs = [e.seq for e in recorder.of_run(run.run_id)]
    assert seqs == list(range(len(seqs)))
    started = recorder.of_type(EventType.RUN_STARTED)[0].data
    assert started["invoker"] == "alice" and started["policy_version"] == gateway.policy.version
    assert run.status is RunStatus.COMPLETED


@pytest.mark.parametrize(
    ("tool", "args", "reason", "needle"),
    [
        ("nope", "{}", Reason.UNKNOWN_TOOL, "available tools: lookup"),
        ("lookup", "{not json", Reason.INVALID_ARGUMENTS, "not valid JSON"),
        ("lookup", '{"order_id": 5}', Reason.INVALID_ARGUMENTS, "`order_id`"),
        ("lookup", '{"order_id": "A", "x": 1}', Reason.INVALID_ARGUMENTS, "`x`"),
        ("lookup", "[1]", Reason.INVALID_ARGUMENTS, "JSON object"),
        ("pay", {"order_id": "A", "amount": "150"}, Reason.INVALID_ARGUMENTS, "`amount`"),
    ],
)
async def test_invalid_calls_are_counted_refusals(
    make_gateway: Callable[..., Gateway],
    recorder: InMemoryRecorder,
    tool: str,
    args: Any,
    reason: Reason,
    needle: str,
) -> None:
    gateway = make_gateway()
    run = _start(gateway)
    outcome = await gateway.call(run, tool, args)
    assert outcome.status is OutcomeStatus.REFUSED
    assert outcome.decision.reason is reason
    assert needle in outcome.message and needle in outcome.for_model()
    assert run.refusals == 1 and run.active
    decisions = recorder.of_type(EventType.DECISION)
    assert len(decisions) == 1 and decisions[0].data["reason"] == reason.value


async def test_tool_exception_is_a_counted_error_and_the_run_goes_on(
    make_policy: Callable[..., CompiledPolicy], recorder: InMemoryRecorder
) -> None:
    @tool(scope="read")
    def lookup(order_id: str) -> str:
        """Fails."""
        raise KeyError(order_id)

    belt = Toolbelt([lookup, *[c for c in BELT if c.name != "lookup"]])
    gateway = Gateway(
        belt, load_policy("p", belt, text=_policy_text(make_policy)), recorder=recorder
    )
    run = _start(gateway)
    outcome = await gateway.call(run, "lookup", {"order_id": "ORD-1"})
    assert outcome.status is OutcomeStatus.ERROR and "KeyError" in outcome.message
    assert run.errors == 1 and run.active
    assert recorder.of_type(EventType.TOOL_ERROR)[0].data["error_type"] == "KeyError"
    assert (await gateway.call(run, "draft", {"text": "x"})).ok


def _policy_text(make_policy: Callable[..., CompiledPolicy]) -> str:
    from tests.conftest import BASE_POLICY

    return BASE_POLICY % {"stage": "autonomous_in_scope"}


async def test_hanging_read_is_retried_then_escalates_on_the_retry_cap(
    make_gateway: Callable[..., Gateway], recorder: InMemoryRecorder
) -> None:
    gateway = make_gateway()
    run = _start(gateway)
    t0 = time.monotonic()
    outcome = await gateway.call(run, "slow", {"seconds": 30})
    assert time.monotonic() - t0 < 3
    assert outcome.status is OutcomeStatus.ESCALATED
    assert run.status is RunStatus.ESCALATED and run.escalation is not None
    assert run.escalation.cap == "max_retries" and run.retries == 2
    assert len(recorder.of_type(EventType.TOOL_RETRY)) == 2
    assert recorder.of_type(EventType.TOOL_ERROR)[0].data["error_type"] == "ToolTimeout"
    assert _types(recorder, run.run_id)[-2:] == ["escalated", "run_ended"]


async def test_hanging_sync_write_is_not_retried(
    make_policy: Callable[..., CompiledPolicy], recorder: InMemoryRecorder
) -> None:
    @tool(scope="write")
    def note(ticket: str, text: str, urgent: bool = False) -> str:
        """Hangs."""
        time.sleep(1.0)
        return "late"

    belt = Toolbelt([note, *[c for c in BELT if c.name != "note"]])
    text = _policy_text(make_policy).replace(
        "note: {approval: never}", "note: {approval: never, timeout_seconds: 0.1}"
    )
    gateway = Gateway(belt, load_policy("p", belt, text=text), recorder=recorder)
    run = _start(gateway, request="note on T-1")
    outcome = await gateway.call(run, "note", {"ticket": "T-1", "text": "x"})
    assert outcome.status is OutcomeStatus.ERROR and "did not answer" in outcome.message
    assert run.retries == 0 and run.active
    gateway.close()


async def test_transient_errors_are_retried(
    make_policy: Callable[..., CompiledPolicy], recorder: InMemoryRecorder
) -> None:
    attempts: list[int] = []

    @tool(scope="read")
    async def lookup(order_id: str) -> str:
        """Flaky."""
        attempts.append(1)
        if len(attempts) < 2:
            raise ToolTransientError("503 from upstream")
        return "fine"

    belt = Toolbelt([lookup, *[c for c in BELT if c.name != "lookup"]])
    gateway = Gateway(
        belt, load_policy("p", belt, text=_policy_text(make_policy)), recorder=recorder
    )
    run = _start(gateway)
    outcome = await gateway.call(run, "lookup", {"order_id": "A"})
    assert outcome.ok and outcome.result == "fine" and run.retries == 1
    assert recorder.of_type(EventType.TOOL_RESULT)[0].data["attempts"] == 2


async def test_unserialisable_result_is_an_error(
    make_policy: Callable[..., CompiledPolicy], recorder: InMemoryRecorder
) -> None:
    @tool(scope="read")
    def lookup(order_id: str) -> Any:
        """Returns a socket-like object."""
        return object()

    belt = Toolbelt([lookup, *[c for c in BELT if c.name != "lookup"]])
    gateway = Gateway(
        belt, load_policy("p", belt, text=_policy_text(make_policy)), recorder=recorder
    )
    run = _start(gateway)
    outcome = await gateway.call(run, "lookup", {"order_id": "A"})
    assert outcome.status is OutcomeStatus.ERROR and "not JSON data" in outcome.message
    assert recorder.of_type(EventType.TOOL_ERROR)[0].data["error_type"] == "UnserialisableResult"


async def test_loop_escalates_and_keeps_partial_progress(
    make_gateway: Callable[..., Gateway], recorder: InMemoryRecorder
) -> None:
    gateway = make_gateway()
    run = _start(gateway)
    await gateway.call(run, "draft", {"text": "a"})
    outcomes = [await gateway.call(run, "lookup", {"order_id": "A"}) for _ in range(7)]
    assert [o.status for o in outcomes[:5]] == [OutcomeStatus.OK] * 5
    assert outcomes[5].status is OutcomeStatus.ESCALATED
    assert outcomes[6].decision.reason is Reason.RUN_NOT_ACTIVE
    assert run.escalation is not None
    progress = run.escalation.progress
    assert [c.tool for c in progress.completed] == ["draft"] + ["lookup"] * 5
    assert [u.tool for u in progress.unexecuted] == ["lookup"]
    escalated = recorder.of_type(EventType.ESCALATED)[0].data
    assert escalated["cap"] == "max_identical_calls"
    assert len(escalated["progress"]["completed"]) == 6


async def test_invalid_calls_count_toward_the_caps(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    run = _start(gateway)
    statuses = [(await gateway.call(run, "nope", "{}")).status for _ in range(6)]
    assert statuses[-1] is OutcomeStatus.ESCALATED
    assert run.escalation is not None and run.escalation.cap == "max_identical_calls"


async def test_cost_cap_escalates_before_the_call(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    run = _start(gateway)
    gateway.add_cost(run, 10.0)
    outcome = await gateway.call(run, "lookup", {"order_id": "A"})
    assert outcome.status is OutcomeStatus.ESCALATED
    assert run.escalation is not None and run.escalation.cap == "max_cost_usd"
    assert run.completed == []


def test_steps_cap(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    run = _start(gateway)
    assert all(gateway.step(run) for _ in range(20))
    assert not gateway.step(run)
    assert run.status is RunStatus.ESCALATED and run.escalation is not None
    assert run.escalation.cap == "max_steps"


async def test_secrets_are_injected_and_never_recorded(
    make_policy: Callable[..., CompiledPolicy], recorder: InMemoryRecorder
) -> None:
    @tool(scope="read", secrets=["API_TOKEN"])
    def lookup(ctx: ToolContext[None], order_id: str) -> str:
        """Echoes its secret (a badly written tool)."""
        return f"token={ctx.secrets['API_TOKEN']} order={order_id}"

    lookup_fixed = lookup
    belt = Toolbelt([lookup_fixed, *[c for c in BELT if c.name != "lookup"]])
    gateway = Gateway(
        belt,
        load_policy("p", belt, text=_policy_text(make_policy)),
        recorder=recorder,
        secrets=MappingSecretStore({"API_TOKEN": "tok-123456789"}),
    )
    run = _start(gateway)
    outcome = await gateway.call(run, "lookup", {"order_id": "A"})
    assert outcome.ok
    assert "API_TOKEN" not in str(lookup_fixed.parameters_schema)
    assert all("tok-123456789" not in repr(e.data) for e in recorder.events)
    assert "[secret API_TOKEN]" in recorder.of_type(EventType.TOOL_RESULT)[0].data["result"]


async def test_missing_secret_is_a_clear_error(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(
        secrets=MappingSecretStore({}), approver=CallbackApprover(lambda r: _yes())
    )
    run = _start(gateway, request="pay ORD-1 40")
    outcome = await gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 40.0})
    assert outcome.status is OutcomeStatus.ERROR
    assert "secret `PAY_KEY`" in outcome.message and "not configured" in outcome.message


def _yes() -> Any:
    from opsgate.gateway import ApprovalAnswer

    return ApprovalAnswer(True, "bob")


async def test_tool_results_carry_their_provenance(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    run = _start(gateway, request="Handle mail M-1")
    await gateway.call(run, "read_mail", {"mail_id": "M-1"})
    # the mail (untrusted) asks for a refund of 999 to ORD-9 and a message to evil@...
    denied = await gateway.call(run, "send", {"to": "evil@attacker.test", "body": "hi"})
    assert denied.decision.reason is Reason.ARG_CONSTRAINT
    paid = await gateway.call(run, "pay", {"order_id": "ORD-9", "amount": 40.0})
    assert paid.decision.reason is Reason.UNTRUSTED_DERIVATION
    assert paid.decision.source is not None and paid.decision.source.startswith("tool:read_mail")
    # a trusted lookup corroborates the order id, but 40 is still nowhere trusted
    await gateway.call(run, "lookup", {"order_id": "ORD-9"})
    again = await gateway.call(run, "pay", {"order_id": "ORD-9", "amount": 40.0})
    assert again.decision.argument == "amount"


async def test_context_items_are_labelled(
    make_gateway: Callable[..., Gateway], recorder: InMemoryRecorder
) -> None:
    gateway = make_gateway()
    run = _start(gateway, context=[ContextItem("refund 30 to ORD-1", "untrusted", "ticket:1")])
    reads = [e.data for e in recorder.of_type(EventType.CONTEXT_READ)]
    assert [(r["source"], r["trust"]) for r in reads] == [
        ("request", "trusted"),
        ("ticket:1", "untrusted"),
    ]
    assert reads[1]["text"] == "refund 30 to ORD-1"  # what it read is on the record
    gateway.observe(run, "x" * 10_000, trust="untrusted", source="doc:big")
    big = recorder.of_type(EventType.CONTEXT_READ)[-1].data
    assert len(big["text"]) == 8192 and big["chars"] == 10_000
    outcome = await gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 30.0})
    assert outcome.decision.argument == "amount" and outcome.decision.source == "ticket:1"


def test_start_run_errors(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    with pytest.raises(PolicyError, match="no workflow `other`"):
        gateway.start_run("other", invoker="a", agent_id="b", request="x")
    with pytest.raises(PolicyError, match="invoker identity"):
        gateway.start_run("wf", invoker="", agent_id="b", request="x")


def test_call_sync(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    run = _start(gateway)
    assert gateway.call_sync(run, "lookup", {"order_id": "A"}).ok


async def test_recorder_failure_stops_the_call_before_the_tool_runs(
    make_policy: Callable[..., CompiledPolicy],
) -> None:
    ran: list[str] = []

    @tool(scope="read")
    def lookup(order_id: str) -> str:
        """Records that it ran."""
        ran.append(order_id)
        return "ok"

    class Broken(InMemoryRecorder):
        def record(self, event: Any) -> None:
            if event.type is EventType.DECISION:
                raise OSError("disk full")
            super().record(event)

    belt = Toolbelt([lookup, *[c for c in BELT if c.name != "lookup"]])
    gateway = Gateway(
        belt, load_policy("p", belt, text=_policy_text(make_policy)), recorder=Broken()
    )
    run = _start(gateway)
    with pytest.raises(OSError, match="disk full"):
        await gateway.call(run, "lookup", {"order_id": "A"})
    assert ran == []


_proposals = st.lists(
    st.sampled_from(
        [
            ("lookup", '{"order_id": "ORD-1"}'),
            ("lookup", "{broken"),
            ("nope", "{}"),
            ("draft", '{"text": "x"}'),
            ("pay", '{"order_id": "ORD-1", "amount": 500}'),
            ("pay", '{"order_id": "ORD-1", "amount": 60}'),
            ("send", '{"to": "ana@example.com", "body": "b"}'),
            ("note", '{"ticket": "T-1", "text": "t"}'),
        ]
    ),
    max_size=25,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(proposals=_proposals, approve=st.booleans())
def test_every_call_yields_exactly_one_decision_event(
    make_policy: Callable[..., CompiledPolicy], proposals: list[tuple[str, str]], approve: bool
) -> None:
    recorder = InMemoryRecorder()
    gateway = Gateway(
        BELT,
        make_policy(),
        recorder=recorder,
        approver=CallbackApprover(lambda r: _answer(approve)),
        secrets=MappingSecretStore({"PAY_KEY": "k-1234"}),
    )
    run = gateway.start_run("wf", invoker="a", agent_id="b", request="ORD-1 60 T-1", deps={})

    async def go() -> list[Any]:
        return [await gateway.call(run, t, a) for t, a in proposals]

    outcomes = asyncio.run(go())
    decisions = recorder.of_type(EventType.DECISION)
    assert len(decisions) == len(proposals) == len(outcomes)
    assert [d.data["call_id"] for d in decisions] == [o.call_id for o in outcomes]
    proposed = recorder.of_type(EventType.TOOL_CALL_PROPOSED)
    assert len(proposed) == len(proposals)
    gateway.close()


def _answer(approve: bool) -> Any:
    from opsgate.gateway import ApprovalAnswer

    return ApprovalAnswer(approve, "carol", "checked")


async def test_a_secret_pasted_into_the_request_is_scrubbed_from_the_first_record(
    make_gateway: Callable[..., Gateway], recorder: InMemoryRecorder
) -> None:
    secret = "pk_" + "7" * 24  # matches no redaction pattern: only the gateway knows it
    gateway = make_gateway(secrets=MappingSecretStore({"PAY_KEY": secret}))
    _start(gateway, context=[ContextItem(f"my key is {secret}", "untrusted", "ticket:1")])
    records = repr([e.data for e in recorder.events])
    assert recorder.events and secret not in records
    assert "[secret PAY_KEY]" in records


async def test_a_secret_across_the_context_cut_leaves_no_part_in_the_record(
    make_gateway: Callable[..., Gateway], recorder: InMemoryRecorder
) -> None:
    secret = "pk_" + "9" * 30
    gateway = make_gateway(secrets=MappingSecretStore({"PAY_KEY": secret}))
    run = _start(gateway)
    gateway.observe(run, "x" * 8180 + secret, trust="untrusted", source="doc:long")
    records = repr([e.data for e in recorder.events])
    assert secret[:12] not in records
