"""The gateway's entry points for callers that pause calls their own way (framework
adapters) or refuse them before the gate (the MCP proxy): `preview`, `call(approval=)`,
`refuse`."""

from __future__ import annotations

from opsgate.gateway import (
    ApprovalAnswer,
    Gateway,
    MappingSecretStore,
    OutcomeStatus,
    RunStatus,
)
from opsgate.policy import Effect, Reason, load_policy
from opsgate.recorder import EventType, InMemoryRecorder
from tests.conftest import BASE_POLICY, BELT


def _gateway(recorder: InMemoryRecorder) -> Gateway:
    policy = load_policy("p", BELT, text=BASE_POLICY % {"stage": "autonomous_in_scope"})
    return Gateway(BELT, policy, recorder=recorder, secrets=MappingSecretStore({"PAY_KEY": "k"}))


def test_preview_decides_without_recording_or_counting() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="refund ORD-1 80")
    before = len(recorder)
    assert gateway.preview(run, "pay", {"order_id": "ORD-1", "amount": 80.0}).effect is (
        Effect.NEEDS_APPROVAL
    )
    assert gateway.preview(run, "lookup", {"order_id": "ORD-1"}).effect is Effect.ALLOW
    assert gateway.preview(run, "nope", {}).reason is Reason.UNKNOWN_TOOL
    assert gateway.preview(run, "pay", '{"amount": "80"}').reason is Reason.INVALID_ARGUMENTS
    assert len(recorder) == before and run.tool_calls == 0 and not run.call_counts
    gateway.finish(run)
    assert gateway.preview(run, "lookup", {"order_id": "ORD-1"}).reason is Reason.RUN_NOT_ACTIVE


async def test_an_answer_given_to_call_is_recorded_with_its_approver() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)  # its own approver denies everything: it is not asked
    run = gateway.start_run(
        "wf", invoker="ana", agent_id="bot", request="refund ORD-1 80, ORD-2 90", deps={}
    )
    outcome = await gateway.call(
        run,
        "pay",
        {"order_id": "ORD-1", "amount": 80.0},
        approval=ApprovalAnswer(True, "maria", "customer verified"),
    )
    assert outcome.ok and run.status is RunStatus.RUNNING
    (granted,) = recorder.of_type(EventType.APPROVAL_GRANTED)
    assert granted.data["approver"] == "maria" and granted.data["reason"] == "customer verified"
    assert len(recorder.of_type(EventType.APPROVAL_REQUESTED)) == 1
    denied = await gateway.call(
        run, "pay", {"order_id": "ORD-2", "amount": 90.0}, approval=ApprovalAnswer(False, "maria")
    )
    assert denied.status is OutcomeStatus.APPROVAL_DENIED and run.denials == 1
    # an answer where none is needed changes nothing, and is not recorded
    await gateway.call(run, "lookup", {"order_id": "ORD-1"}, approval=ApprovalAnswer(True, "x"))
    assert len(recorder.of_type(EventType.APPROVAL_GRANTED)) == 1


def test_refuse_records_a_refusal_made_before_the_gate() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="hi")
    outcome = gateway.refuse(
        run,
        "git.commit",
        {"message": "x"},
        reason=Reason.TOOL_DEFINITION_CHANGED,
        rule="mcp.lock",
        message="`git.commit` changed since it was locked",
    )
    assert outcome.status is OutcomeStatus.REFUSED and run.refusals == 1 and run.tool_calls == 1
    (decision,) = recorder.of_type(EventType.DECISION)
    assert decision.data["reason"] == "tool_definition_changed"
    assert decision.data["rule"] == "mcp.lock"
    assert recorder.of_type(EventType.TOOL_CALL_PROPOSED)[0].data["args"] == {"message": "x"}
    # refusing the same call again and again hits the identical-calls cap like any call
    for _ in range(6):
        last = gateway.refuse(
            run,
            "git.commit",
            {"message": "x"},
            reason=Reason.TOOL_DEFINITION_CHANGED,
            rule="mcp.lock",
            message="changed",
        )
    assert last.status is OutcomeStatus.ESCALATED and run.status is RunStatus.ESCALATED


async def test_refusals_of_the_same_call_count_as_identical_whatever_the_key_order() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="hi")
    await gateway.call(run, "pay", '{"order_id": "A", "amount": "1"}')
    await gateway.call(run, "pay", '{"amount": "1", "order_id": "A"}')
    assert run.refusals == 2 and sorted(run.call_counts.values()) == [2]
