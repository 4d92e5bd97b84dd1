"""Approvals: who approved, what runs after a yes, a no, a broken approver, an expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from opsgate.gateway import (
    ApprovalAnswer,
    ApprovalRequest,
    CallbackApprover,
    Gateway,
    InMemoryApprovalQueue,
    OutcomeStatus,
    RunStatus,
)
from opsgate.recorder import EventType, InMemoryRecorder

PAY_60 = {"order_id": "ORD-1", "amount": 60.0}


def _run(gateway: Gateway, deps: Any = None) -> Any:
    return gateway.start_run(
        "wf",
        invoker="alice",
        agent_id="bot",
        request="refund 60 on ORD-1",
        deps=deps if deps is not None else {},
    )


async def test_approved_call_runs_once_and_names_the_approver(
    make_gateway: Callable[..., Gateway], recorder: InMemoryRecorder
) -> None:
    seen: list[ApprovalRequest] = []

    def approve(request: ApprovalRequest) -> ApprovalAnswer:
        seen.append(request)
        return ApprovalAnswer(True, "bob@example.com", "checked the photo")

    gateway = make_gateway(approver=CallbackApprover(approve))
    deps: dict[str, Any] = {}
    run = _run(gateway, deps)
    outcome = await gateway.call(run, "pay", PAY_60)
    assert outcome.ok and deps["paid"] == [("ORD-1", 60.0)]
    assert seen[0].tool == "pay" and seen[0].args["amount"] == 60.0
    assert seen[0].decision.rule.endswith("approval_when")
    granted = recorder.of_type(EventType.APPROVAL_GRANTED)[0].data
    assert granted["approver"] == "bob@example.com"
    assert [e.type for e in recorder.of_run(run.run_id)][-4:] == [
        EventType.APPROVAL_REQUESTED,
        EventType.APPROVAL_GRANTED,
        EventType.TOOL_RESULT,
        EventType.WRITE_PERFORMED,
    ]
    assert run.status is RunStatus.RUNNING and run.unexecuted == []


async def test_denied_call_does_not_run(
    make_gateway: Callable[..., Gateway], recorder: InMemoryRecorder
) -> None:
    gateway = make_gateway(
        approver=CallbackApprover(lambda r: ApprovalAnswer(False, "bob", "too much"))
    )
    deps: dict[str, Any] = {}
    run = _run(gateway, deps)
    outcome = await gateway.call(run, "pay", PAY_60)
    assert outcome.status is OutcomeStatus.APPROVAL_DENIED and "too much" in outcome.message
    assert "paid" not in deps and run.denials == 1
    assert recorder.of_type(EventType.APPROVAL_DENIED)[0].data["approver"] == "bob"


async def test_default_approver_denies(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    outcome = await gateway.call(_run(gateway), "pay", PAY_60)
    assert outcome.status is OutcomeStatus.APPROVAL_DENIED
    assert "no approver is configured" in outcome.message


async def test_broken_approver_never_approves_and_is_no_honest_denial(
    make_gateway: Callable[..., Gateway], recorder: InMemoryRecorder
) -> None:
    def explode(request: ApprovalRequest) -> ApprovalAnswer:
        raise RuntimeError("pager down")

    gateway = make_gateway(approver=CallbackApprover(explode))
    run = _run(gateway)
    outcome = await gateway.call(run, "pay", PAY_60)
    # Nothing ran, and nobody denied it either: the run stops for a person, counted apart.
    assert outcome.status is OutcomeStatus.ESCALATED and "pager down" in outcome.message
    assert run.escalation is not None and run.escalation.reason == "approver_error"
    assert run.denials == 0
    assert not recorder.of_type(EventType.APPROVAL_DENIED)
    assert not recorder.of_type(EventType.TOOL_RESULT)


def test_anonymous_answers_are_refused() -> None:
    with pytest.raises(ValueError, match="identity"):
        ApprovalAnswer(True, "  ")


async def test_expiry_escalates_and_keeps_the_proposed_call(
    make_gateway: Callable[..., Gateway], recorder: InMemoryRecorder
) -> None:
    queue = InMemoryApprovalQueue()
    gateway = make_gateway(approver=queue, approval_timeout_s=0.05)
    run = _run(gateway)
    await gateway.call(run, "lookup", {"order_id": "ORD-1"})
    outcome = await gateway.call(run, "pay", PAY_60)
    assert outcome.status is OutcomeStatus.ESCALATED
    assert run.escalation is not None and run.escalation.reason == "approval_expired"
    assert [c.tool for c in run.escalation.progress.completed] == ["lookup"]
    assert [(u.tool, u.why) for u in run.escalation.progress.unexecuted] == [
        ("pay", "awaiting approval")
    ]
    assert queue.pending() == []


async def test_in_memory_queue(make_gateway: Callable[..., Gateway]) -> None:
    queue = InMemoryApprovalQueue()
    gateway = make_gateway(approver=queue)
    run = _run(gateway)
    task = asyncio.create_task(gateway.call(run, "pay", PAY_60))
    for _ in range(100):
        await asyncio.sleep(0.001)
        if queue.pending():
            break
    [pending] = queue.pending()
    assert run.status is RunStatus.AWAITING_APPROVAL
    queue.approve(pending.request_id, approver="dana", reason="ok")
    outcome = await task
    assert outcome.ok and run.status is RunStatus.RUNNING
    with pytest.raises(KeyError, match="no pending approval"):
        queue.deny(pending.request_id, approver="dana")
