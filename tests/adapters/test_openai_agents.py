"""The OpenAI Agents SDK through `opsgate.guard`, driven by a scripted model through the SDK's
own loop (`Runner.run`): an allowed call, a denied call whose message reaches the model, and
approvals through the SDK's interruptions, answered by a named person."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agents import Agent, RunConfig, RunContextWrapper, Runner, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call
from agents.tool_context import ToolContext

from opsgate import guard
from opsgate.adapters import gate_function
from opsgate.contracts import Toolbelt
from opsgate.gateway import Gateway
from opsgate.policy import load_policy
from tests.adapters._support import ALLOWED, APPROVED, CONSTRAINT, DENIED_BY_LEA, shop, trail

NO_TRACING = RunConfig(tracing_disabled=True)


@function_tool
def get_order(ctx: RunContextWrapper[dict[str, Any]], order_id: str) -> dict[str, Any]:
    """Look up an order in the system of record."""
    return {"order_id": order_id, "total": 120.0, "shop": ctx.context["shop"]}


@function_tool
def refund(ctx: RunContextWrapper[dict[str, Any]], order_id: str, amount: float) -> dict[str, Any]:
    """Refund part or all of an order."""
    ctx.context["refunds"].append((order_id, amount))
    return {"refunded": amount}


BELT = Toolbelt(
    [
        gate_function(get_order, scope="read", output="trusted"),
        gate_function(refund, scope="write", impact="high"),
    ]
)


def _outputs(model: ScriptedModel) -> dict[str, Any]:
    """What the model was shown as each tool call's result, on its last turn."""
    last = model.calls[-1].input
    return {
        item["call_id"]: json.loads(item["output"])
        for item in last
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    }


async def test_allowed_denied_and_approved_calls_through_the_sdk_loop() -> None:
    gateway, run, recorder = shop(BELT)
    model = ScriptedModel(
        [
            [function_call("get_order", {"order_id": "ORD-7"}, call_id="c1")],
            [function_call("refund", {"order_id": "ORD-7", "amount": 500}, call_id="c2")],
            [function_call("refund", {"order_id": "ORD-7", "amount": 80}, call_id="c3")],
            [assistant_message("Refunded 80 on ORD-7.")],
        ]
    )
    tools = guard(gateway, run, [get_order, refund])
    agent = Agent(name="support", model=model, tools=tools)
    context: dict[str, Any] = {"shop": "acme", "refunds": []}

    result = await Runner.run(agent, "Refund 80 on ORD-7", context=context, run_config=NO_TRACING)
    [item] = result.interruptions  # the policy sent refund 80 to a person: the run paused
    assert item.tool_name == "refund" and context["refunds"] == []
    assert trail(recorder, "c3") == []  # nothing decided yet: the call is the person's
    state = result.to_state()
    tools.approve(state, item, approver="lea", reason="customer is right")
    result = await Runner.run(agent, state, run_config=NO_TRACING)

    assert result.final_output == "Refunded 80 on ORD-7."
    assert context["refunds"] == [("ORD-7", 80.0)]  # the SDK's own context reached the tool
    shown = _outputs(model)
    assert shown["c1"] == {"order_id": "ORD-7", "total": 120.0, "shop": "acme"}
    assert shown["c2"]["reason"] == "arg_constraint" and "at most 200" in shown["c2"]["error"]
    assert shown["c3"] == {"refunded": 80.0}
    assert trail(recorder, "c1") == ALLOWED
    assert trail(recorder, "c2") == CONSTRAINT
    assert trail(recorder, "c3") == APPROVED


async def test_a_rejection_is_recorded_with_its_approver_and_read_by_the_model() -> None:
    gateway, run, recorder = shop(BELT)
    model = ScriptedModel(
        [
            [function_call("refund", {"order_id": "ORD-7", "amount": 80}, call_id="c1")],
            [assistant_message("I could not refund it.")],
        ]
    )
    tools = guard(gateway, run, [get_order, refund])
    agent = Agent(name="support", model=model, tools=tools)
    context: dict[str, Any] = {"shop": "acme", "refunds": []}
    result = await Runner.run(agent, "Refund 80 on ORD-7", context=context, run_config=NO_TRACING)
    state = result.to_state()
    tools.reject(state, result.interruptions[0], approver="lea", reason="over the limit")
    await Runner.run(agent, state, run_config=NO_TRACING)

    assert context["refunds"] == []
    shown = _outputs(model)["c1"]
    assert shown["status"] == "approval_denied" and "over the limit" in shown["error"]
    assert trail(recorder, "c1") == DENIED_BY_LEA


def test_the_model_is_offered_the_contract_not_the_sdk_context() -> None:
    gateway, run, _ = shop(BELT)
    tools = guard(gateway, run, [get_order, refund])
    assert [t.name for t in tools] == ["get_order", "refund"]
    assert list(tools[1].params_json_schema["properties"]) == ["order_id", "amount"]
    assert tools[1].params_json_schema["additionalProperties"] is False


def test_an_item_without_a_call_id_cannot_be_answered() -> None:
    gateway, run, _ = shop(BELT)
    tools = guard(gateway, run, [refund])

    class Item:
        call_id = None

    with pytest.raises(ValueError, match="no call id"):
        tools.approve(object(), Item(), approver="lea")  # type: ignore[arg-type]


async def test_the_sdk_tool_context_reaches_a_function_that_asks_for_it() -> None:
    @function_tool
    def whoami(ctx: ToolContext[Any], note: str) -> str:
        """Say which call this is."""
        return f"{ctx.tool_call_id}:{note}"

    belt = Toolbelt([gate_function(whoami, scope="read")])
    policy = 'version: "1"\nworkflows:\n  w:\n    stage: read_only\n    tools: {whoami: {}}\n'
    gateway = Gateway(belt, load_policy("p", belt, text=policy))
    run = gateway.start_run("w", invoker="maria", agent_id="bot-1", request="who")
    model = ScriptedModel(
        [[function_call("whoami", {"note": "hi"}, call_id="c7")], [assistant_message("ok")]]
    )
    agent = Agent(name="w", model=model, tools=guard(gateway, run, [whoami]))
    await Runner.run(agent, "who", run_config=NO_TRACING)
    assert _outputs(model)["c7"] == "c7:hi"
