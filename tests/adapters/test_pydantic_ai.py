"""pydantic-ai through `opsgate.guard`, driven by a scripted `FunctionModel` through the
agent's own loop: an allowed call, a denied call whose message reaches the model, and
approvals as deferred tool calls, answered by a named person."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    ModelResponsePart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import FunctionToolset

from opsgate import guard
from opsgate.adapters import gate_function
from opsgate.contracts import Toolbelt
from tests.adapters._support import ALLOWED, APPROVED, CONSTRAINT, DENIED_BY_LEA, shop, trail


@dataclass
class Shop:
    name: str = "acme"
    refunds: list[tuple[str, float]] = field(default_factory=list)


toolset: FunctionToolset[Shop] = FunctionToolset()


@toolset.tool
def get_order(ctx: RunContext[Shop], order_id: str) -> dict[str, Any]:
    """Look up an order in the system of record."""
    return {"order_id": order_id, "total": 120.0, "shop": ctx.deps.name}


@toolset.tool
def refund(ctx: RunContext[Shop], order_id: str, amount: float) -> dict[str, Any]:
    """Refund part or all of an order."""
    ctx.deps.refunds.append((order_id, amount))
    return {"refunded": amount}


BELT = Toolbelt(
    [
        gate_function(toolset.tools["get_order"], scope="read", output="trusted"),
        gate_function(toolset.tools["refund"], scope="write", impact="high"),
    ]
)


class Script:
    """A model that says what it is told, turn by turn, and notes what it is shown."""

    def __init__(self, *turns: list[ModelResponsePart]) -> None:
        self.turns = list(turns)
        self.shown: dict[str, Any] = {}
        self.offered: list[dict[str, Any]] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.offered = [{t.name: t.parameters_json_schema} for t in info.function_tools]
        for message in messages:
            for part in getattr(message, "parts", []):
                if isinstance(part, ToolReturnPart):
                    self.shown[part.tool_call_id] = json.loads(part.model_response_str())
        return ModelResponse(parts=self.turns.pop(0))


def _agent(script: Script, guarded: Any) -> Agent[Shop, str | DeferredToolRequests]:
    return Agent(
        FunctionModel(script),
        deps_type=Shop,
        output_type=[str, DeferredToolRequests],
        toolsets=[guarded],
    )


async def test_allowed_denied_and_approved_calls_through_the_agent_loop() -> None:
    gateway, run, recorder = shop(BELT)
    script = Script(
        [ToolCallPart("get_order", {"order_id": "ORD-7"}, tool_call_id="c1")],
        [ToolCallPart("refund", {"order_id": "ORD-7", "amount": 500}, tool_call_id="c2")],
        [ToolCallPart("refund", {"order_id": "ORD-7", "amount": 80}, tool_call_id="c3")],
        [TextPart("Refunded 80 on ORD-7.")],
    )
    guarded = guard(gateway, run, toolset)
    agent = _agent(script, guarded)
    deps = Shop()

    result = await agent.run("Refund 80 on ORD-7", deps=deps)
    requests = result.output
    assert isinstance(requests, DeferredToolRequests)  # paused for a person
    [pending] = requests.approvals
    assert pending.tool_call_id == "c3" and deps.refunds == []
    assert requests.metadata["c3"]["reason"] == "approval_required"
    assert "args.amount > 50.0" in requests.metadata["c3"]["message"]
    result = await agent.run(
        message_history=result.all_messages(),
        deferred_tool_results=guarded.answer(requests, approver="lea", reason="ok"),
        deps=deps,
    )

    assert result.output == "Refunded 80 on ORD-7."
    assert deps.refunds == [("ORD-7", 80.0)]  # pydantic-ai's RunContext reached the tool
    assert script.shown["c1"] == {"order_id": "ORD-7", "total": 120.0, "shop": "acme"}
    assert script.shown["c2"]["reason"] == "arg_constraint"
    assert "at most 200" in script.shown["c2"]["error"]
    assert script.shown["c3"] == {"refunded": 80.0}
    assert trail(recorder, "c1") == ALLOWED
    assert trail(recorder, "c2") == CONSTRAINT
    assert trail(recorder, "c3") == APPROVED


async def test_a_denial_is_recorded_with_its_approver_and_read_by_the_model() -> None:
    gateway, run, recorder = shop(BELT)
    script = Script(
        [ToolCallPart("refund", {"order_id": "ORD-7", "amount": 80}, tool_call_id="c1")],
        [TextPart("I could not refund it.")],
    )
    guarded = guard(gateway, run, toolset)
    agent = _agent(script, guarded)
    deps = Shop()
    result = await agent.run("Refund 80 on ORD-7", deps=deps)
    assert isinstance(result.output, DeferredToolRequests)
    answers = guarded.answer(result.output, approver="lea", approve={"c1": False}, reason="no")
    await agent.run(message_history=result.all_messages(), deferred_tool_results=answers, deps=deps)

    assert deps.refunds == []
    assert script.shown["c1"]["status"] == "approval_denied"
    assert trail(recorder, "c1") == DENIED_BY_LEA


async def test_an_approval_naming_nobody_goes_to_the_gateway_s_approver() -> None:
    gateway, run, recorder = shop(BELT)  # its approver: deny all
    script = Script(
        [ToolCallPart("refund", {"order_id": "ORD-7", "amount": 80}, tool_call_id="c1")],
        [TextPart("done")],
    )
    agent = _agent(script, guard(gateway, run, toolset))
    deps = Shop()
    result = await agent.run("Refund 80 on ORD-7", deps=deps)
    await agent.run(
        message_history=result.all_messages(),
        deferred_tool_results=DeferredToolResults(approvals={"c1": True}),
        deps=deps,
    )
    assert deps.refunds == [] and script.shown["c1"]["status"] == "approval_denied"
    assert ("approval_denied", "opsgate:no-approver") in trail(recorder, "c1")


async def test_the_model_is_offered_the_contract_not_the_run_context() -> None:
    gateway, run, _ = shop(BELT)
    script = Script([TextPart("hello")])
    guarded = guard(gateway, run, [get_order, "refund"], framework="pydantic-ai")
    await _agent(script, guarded).run("hi", deps=Shop())
    assert script.offered == [
        {"get_order": BELT.get("get_order").parameters_schema},
        {"refund": BELT.get("refund").parameters_schema},
    ]
    assert "ctx" not in json.dumps(script.offered)


def test_an_answer_per_call_must_answer_every_call() -> None:
    gateway, run, _ = shop(BELT)
    guarded = guard(gateway, run, toolset)
    requests = DeferredToolRequests(approvals=[ToolCallPart("refund", {}, tool_call_id="c1")])
    with pytest.raises(ValueError, match="no answer for tool call `c1`"):
        guarded.answer(requests, approver="lea", approve={"c2": True})
