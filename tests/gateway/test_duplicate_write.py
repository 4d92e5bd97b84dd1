"""A write repeated with identical arguments in one run is refused (`duplicate_write`) unless its
policy declares it repeatable; the decision names the call it repeats (issue #11, fault 3: the demo
ran `refund(ORD-1001, 40)` three times and only the shop's balance check stopped it)."""

from __future__ import annotations

from typing import Any

from opsgate.contracts import Toolbelt
from opsgate.examples.support_triage import POLICY_PATH, tools
from opsgate.examples.support_triage.world import demo_world
from opsgate.gateway import (
    ApprovalAnswer,
    CallbackApprover,
    Gateway,
    MappingSecretStore,
    OutcomeStatus,
    Run,
)
from opsgate.policy import Reason, load_policy
from opsgate.recorder import EventType, InMemoryRecorder

BELT = Toolbelt.from_module(tools)
REFUND = {"order_id": "ORD-1001", "amount": 40.0, "reason": "damaged"}


def _gateway(text: str | None = None) -> tuple[Gateway, InMemoryRecorder]:
    policy = load_policy(POLICY_PATH, BELT, text=text)
    recorder = InMemoryRecorder()
    gateway = Gateway(
        BELT,
        policy,
        recorder=recorder,
        approver=CallbackApprover(lambda r: ApprovalAnswer(True, "ops:bob", "ok")),
        secrets=MappingSecretStore({"PAYMENTS_API_KEY": "pay-key-000000"}),
    )
    return gateway, recorder


def _run(gateway: Gateway) -> Run:
    return gateway.start_run(
        "support_triage",
        invoker="desk",
        agent_id="triage-bot",
        request="Refund 40 for the broken mug of ORD-1001",
        deps=demo_world(),
    )


async def _refund(gateway: Gateway, run: Run, **changes: Any) -> Any:
    return await gateway.call(run, "refund", {**REFUND, **changes})


async def test_the_same_refund_runs_once_and_the_repeat_names_the_first() -> None:
    gateway, recorder = _gateway()
    run = _run(gateway)
    await gateway.call(run, "get_order_status", {"order_id": "ORD-1001"})
    first = await _refund(gateway, run)
    assert first.ok
    again = await _refund(gateway, run)
    assert again.status is OutcomeStatus.DENIED
    assert again.decision.reason is Reason.DUPLICATE_WRITE
    assert again.decision.repeats == first.call_id
    assert first.call_id in again.message
    assert run.deps.orders["ORD-1001"].refunded == 40.0
    decisions = [e.data for e in recorder.of_type(EventType.DECISION)]
    assert (
        decisions[-1]["reason"] == "duplicate_write" and decisions[-1]["repeats"] == first.call_id
    )
    # other arguments are another write: decided on its own merits, not as a repeat
    other = await _refund(gateway, run, amount=10.0)
    assert other.decision.reason is not Reason.DUPLICATE_WRITE


async def test_a_repeatable_write_may_run_again() -> None:
    text = POLICY_PATH.read_text().replace(
        "      add_internal_note:\n        approval: never",
        "      add_internal_note:\n        approval: never\n        repeatable: true",
    )
    gateway, _ = _gateway(text)
    run = _run(gateway)
    note = {"ticket_id": "T-1", "text": "customer called again"}
    assert (await gateway.call(run, "add_internal_note", note)).status is not OutcomeStatus.DENIED
    second = await gateway.call(run, "add_internal_note", note)
    assert second.decision.reason is not Reason.DUPLICATE_WRITE


async def test_a_write_that_did_not_run_is_no_duplicate() -> None:
    gateway, _ = _gateway()
    run = _run(gateway)
    await gateway.call(run, "get_order_status", {"order_id": "ORD-1001"})
    too_much = await _refund(gateway, run, amount=250.0)
    assert too_much.decision.reason is Reason.ARG_CONSTRAINT
    assert not run.executed_writes
    assert (await _refund(gateway, run)).ok


async def test_the_executed_writes_survive_a_snapshot() -> None:
    gateway, _ = _gateway()
    run = _run(gateway)
    await gateway.call(run, "get_order_status", {"order_id": "ORD-1001"})
    first = await _refund(gateway, run)
    again = Run.restore(run.snapshot(), deps=run.deps)
    assert list(again.executed_writes.values()) == [first.call_id]
