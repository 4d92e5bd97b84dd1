"""Adapters: OpenAI-format tool calls and wrapped foreign functions pass the same gate."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from opsgate.adapters import GatedFunction, OpenAIToolDispatcher, ToolCallBlocked, gate_function
from opsgate.contracts import Toolbelt, ToolContext
from opsgate.errors import ContractError, InvalidToolCall
from opsgate.gateway import Gateway
from opsgate.policy import CompiledPolicy, load_policy
from opsgate.recorder import EventType, InMemoryRecorder
from tests.conftest import BELT


def _run(gateway: Gateway) -> object:
    return gateway.start_run("wf", invoker="a", agent_id="b", request="ORD-1")


async def test_openai_dispatcher(
    make_gateway: Callable[..., Gateway], recorder: InMemoryRecorder
) -> None:
    gateway = make_gateway()
    run = gateway.start_run("wf", invoker="a", agent_id="b", request="ORD-1")
    dispatcher = OpenAIToolDispatcher(gateway, run)
    names = [t["function"]["name"] for t in dispatcher.tools()]
    assert names == gateway.policy.allowed_tools("wf")
    message = await dispatcher.dispatch(
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"order_id": "ORD-1"}'},
        }
    )
    assert message["role"] == "tool" and message["tool_call_id"] == "call_1"
    assert json.loads(message["content"])["total"] == 120.0
    sdk_like = SimpleNamespace(
        id="call_2", function=SimpleNamespace(name="lookup", arguments="{oops")
    )
    [bad] = await dispatcher.dispatch_all([sdk_like])
    assert json.loads(bad["content"])["reason"] == "invalid_arguments"
    assert [e.data["call_id"] for e in recorder.of_type(EventType.DECISION)] == ["call_1", "call_2"]


async def test_dispatcher_offers_only_allowed_tools() -> None:
    text = 'version: "1"\nworkflows:\n  wf:\n    stage: read_only\n    tools: {lookup: {}}\n'
    gateway = Gateway(BELT, load_policy("p", BELT, text=text))
    dispatcher = OpenAIToolDispatcher(gateway, _run(gateway))  # type: ignore[arg-type]
    assert [t["function"]["name"] for t in dispatcher.tools()] == ["lookup"]


async def test_gated_function(make_policy: Callable[..., CompiledPolicy]) -> None:
    def fetch_weather(city: str) -> str:
        """A function from another framework."""
        return f"sunny in {city}"

    contract = gate_function(fetch_weather, scope="read", name="lookup")
    belt = Toolbelt([contract, *[c for c in BELT if c.name != "lookup"]])
    gateway = Gateway(
        belt,
        load_policy(
            "p",
            belt,
            text='version: "1"\nworkflows:\n  wf:\n    stage: read_only\n'
            "    tools: {lookup: {constraints: {city: {in: [Paris]}}}}\n",
        ),
    )
    run = _run(gateway)
    weather = GatedFunction(gateway, run, "lookup")  # type: ignore[arg-type]
    assert await weather(city="Paris") == "sunny in Paris"
    with pytest.raises(ToolCallBlocked) as info:
        await weather(city="Oslo")
    assert info.value.outcome.decision.reason == "arg_constraint"
    with pytest.raises(InvalidToolCall):
        GatedFunction(gateway, run, "missing")  # type: ignore[arg-type]


class RunContext:
    """Stands in for a framework's context type (pydantic-ai's, by its name)."""

    def __init__(self, user: str) -> None:
        self.user = user


def test_a_framework_injected_parameter_is_bound_not_offered_to_the_model() -> None:
    seen: list[str] = []

    def lookup(ctx: RunContext, order_id: str) -> dict[str, str]:
        """Look an order up."""
        seen.append(ctx.user)
        return {"order_id": order_id}

    contract = gate_function(lookup, scope="read", inject={"ctx": RunContext("ana")})
    assert list(contract.parameters_schema["properties"]) == ["order_id"]
    assert contract.parameters_schema["required"] == ["order_id"]
    assert contract.fn(order_id="ORD-1") == {"order_id": "ORD-1"} and seen == ["ana"]
    assert contract.name == "lookup" and contract.description == "Look an order up."


async def test_an_async_function_keeps_its_injected_parameter() -> None:
    async def fetch(config: RunContext, url: str) -> str:
        """Fetch."""
        return f"{config.user}:{url}"

    contract = gate_function(fetch, scope="read", inject={"config": RunContext("bob")})
    assert contract.is_async and list(contract.parameters_schema["properties"]) == ["url"]
    assert await contract.fn(url="u") == "bob:u"


def test_an_unbound_framework_parameter_is_filled_in_by_the_framework_not_the_model() -> None:
    def lookup(ctx: RunContext, order_id: str) -> str:
        """Look up."""
        return order_id

    contract = gate_function(lookup, scope="read")
    assert list(contract.parameters_schema["properties"]) == ["order_id"]
    assert contract.context_param == "_opsgate_ctx"  # how the gateway finds the framework's value
    with pytest.raises(ContractError, match="inject names no parameter nope"):
        gate_function(lookup, scope="read", inject={"ctx": RunContext("a"), "nope": 1})


async def test_outside_a_guard_a_framework_parameter_is_a_counted_tool_error() -> None:
    def lookup(ctx: RunContext, order_id: str) -> str:
        """Look up."""
        return order_id

    belt = Toolbelt([gate_function(lookup, scope="read")])
    text = 'version: "1"\nworkflows:\n  wf:\n    stage: read_only\n    tools: {lookup: {}}\n'
    gateway = Gateway(belt, load_policy("p", belt, text=text))
    outcome = await gateway.call(_run(gateway), "lookup", {"order_id": "ORD-1"})  # type: ignore[arg-type]
    assert outcome.status == "error" and "through opsgate.guard" in outcome.message


def test_opsgate_s_own_tool_context_is_not_taken_for_a_framework_s() -> None:
    def lookup(ctx: ToolContext[None], order_id: str) -> str:
        """Look up."""
        return order_id

    contract = gate_function(lookup, scope="read")
    assert contract.context_param == "ctx" and contract.fn is lookup
