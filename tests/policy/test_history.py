"""Stateful policy within a run: CEL conditions over the calls that ran (`run.count`,
`run.sum`, `run.called`) and ordering rules (`requires_before`), through the real gateway."""

from __future__ import annotations

from typing import Any

import pytest

from opsgate.errors import PolicyError
from opsgate.gateway import Gateway, MappingSecretStore, OutcomeStatus
from opsgate.policy import Reason, load_policy
from tests.conftest import BELT

HEAD = """
version: "h1"
defaults:
  caps: {max_tool_calls: 50, max_identical_calls: 5}
workflows:
  wf:
    stage: autonomous_in_scope
    tools:
      lookup: {}
      draft: {}
      send: {}
      note: {approval: never}
      pay:
        repeatable: true
        approval: never
    provenance: {trusted_tools: [lookup, draft, send, note, pay]}
"""


def _gateway(extra: str) -> tuple[Gateway, Any]:
    policy = load_policy("h", BELT, text=HEAD + extra)
    gateway = Gateway(BELT, policy, secrets=MappingSecretStore({"PAY_KEY": "k"}))
    run = gateway.start_run(
        "wf",
        invoker="ana",
        agent_id="bot",
        request="refund 100 on ORD-1, ORD-2, ORD-3 and ORD-4; mail bo@example.com",
        deps={},
    )
    return gateway, run


async def _pay(gateway: Gateway, run: Any, order: str, amount: float = 100.0) -> Any:
    return await gateway.call(run, "pay", {"order_id": order, "amount": amount})


async def test_a_run_sum_caps_what_one_run_can_refund() -> None:
    gateway, run = _gateway("""
    rules:
      - id: run_refund_total
        effect: deny
        tools: [pay]
        when: "run.sum('pay', 'amount') + args.amount > 300.0"
        message: at most 300 of refunds in one run
""")
    for order in ("ORD-1", "ORD-2", "ORD-3"):
        assert (await _pay(gateway, run, order)).ok
    fourth = await _pay(gateway, run, "ORD-4")
    assert fourth.status is OutcomeStatus.DENIED
    assert fourth.decision.reason is Reason.RULE_DENIED and "300" in fourth.message


async def test_run_count_with_a_match_allows_one_refund_per_order() -> None:
    gateway, run = _gateway("""
    rules:
      - id: one_refund_per_order
        effect: deny
        tools: [pay]
        when: "run.count('pay', {'order_id': args.order_id}) >= 1"
""")
    assert (await _pay(gateway, run, "ORD-1", 10.0)).ok
    assert (await _pay(gateway, run, "ORD-2", 10.0)).ok
    again = await _pay(gateway, run, "ORD-1", 20.0)
    assert again.decision.reason is Reason.RULE_DENIED


async def test_run_called_requires_a_look_up_of_the_same_order() -> None:
    gateway, run = _gateway("""
    rules:
      - id: look_before_refund
        effect: deny
        tools: [pay]
        when: "!run.called('lookup', {'order_id': args.order_id})"
""")
    assert (await _pay(gateway, run, "ORD-1")).decision.reason is Reason.RULE_DENIED
    assert (await gateway.call(run, "lookup", {"order_id": "ORD-1"})).ok
    assert (await _pay(gateway, run, "ORD-1")).ok
    assert (await _pay(gateway, run, "ORD-2")).decision.reason is Reason.RULE_DENIED


async def test_requires_before_orders_calls_with_the_same_arguments() -> None:
    gateway, run = _gateway("""
    requires_before:
      send: [draft]
      pay: [{tool: lookup, same: [order_id]}]
""")
    early = await gateway.call(run, "send", {"to": "bo@example.com", "body": "hi"})
    assert early.status is OutcomeStatus.DENIED
    assert early.decision.reason is Reason.ORDER_VIOLATION
    assert "after `draft`" in early.message
    assert early.decision.rule == "workflows.wf.requires_before.send.0"
    assert (await gateway.call(run, "draft", {"text": "hi"})).ok
    assert (await gateway.call(run, "send", {"to": "bo@example.com", "body": "hi"})).ok
    await gateway.call(run, "lookup", {"order_id": "ORD-2"})
    refused = await _pay(gateway, run, "ORD-1")
    assert refused.decision.reason is Reason.ORDER_VIOLATION
    assert "with the same order_id" in refused.message
    assert (await _pay(gateway, run, "ORD-2")).ok


async def test_a_history_function_misused_at_run_time_is_a_condition_error() -> None:
    gateway, run = _gateway("""
    rules:
      - id: odd
        effect: deny
        tools: [pay]
        when: "run.count('pay', 'not a map') > 1"
""")
    outcome = await _pay(gateway, run, "ORD-1")
    assert outcome.decision.reason is Reason.CONDITION_ERROR


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("    requires_before: {send: [nope]}\n", "requires_before names tool `nope`"),
        ("    requires_before: {nope: [draft]}\n", "requires_before names tool `nope`"),
        (
            "    requires_before: {pay: [{tool: draft, same: [order_id]}]}\n",
            "`same: [order_id]` needs an argument `order_id` in both `pay` and `draft`",
        ),
        (
            "    rules:\n      - {id: r, effect: deny, tools: [pay], "
            "when: \"run.count('pay') + 2.5 > 3.0\"}\n",
            "ill-typed",
        ),
    ],
)
def test_bad_ordering_and_history_rules_are_refused_at_load(extra: str, needle: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy("h", BELT, text=HEAD + extra)
    assert needle in str(caught.value)


def test_run_only_as_a_history_receiver_is_not_converted_but_still_read_when_used() -> None:
    from opsgate.policy import compile_condition

    def fail(message: str) -> Exception:
        return ValueError(message)

    assert compile_condition("run.count('pay') > 1", fail).run_is_receiver
    assert not compile_condition("run.count('pay') > run.steps", fail).run_is_receiver
    assert not compile_condition("run.steps > 1", fail).run_is_receiver
    assert not compile_condition("size(run) > 1 && run.called('pay')", fail).run_is_receiver


async def test_a_condition_reading_run_fields_beside_history_still_sees_them() -> None:
    gateway, run = _gateway("""
    rules:
      - id: mixed
        effect: deny
        tools: [pay]
        when: "run.count('pay') >= 1 && run.invoker == 'ana'"
""")
    assert (await _pay(gateway, run, "ORD-1", 10.0)).ok
    assert (await _pay(gateway, run, "ORD-2", 10.0)).decision.reason is Reason.RULE_DENIED
