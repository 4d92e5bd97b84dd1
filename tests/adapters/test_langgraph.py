"""LangChain tools in LangGraph through `opsgate.guard`, driven by a fake chat model with tool
calls through a real graph (agent node, `ToolNode`, checkpointer): an allowed call, a
denied call whose message reaches the model, and approvals as a LangGraph `interrupt`,
resumed with the person's answer."""

from __future__ import annotations

import json
from typing import Annotated, Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import InjectedToolCallId
from langchain_core.tools import tool as langchain_tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import InjectedState, ToolNode, ToolRuntime, tools_condition
from langgraph.types import Command

from opsgate import guard
from opsgate.adapters import gate_function
from opsgate.contracts import Toolbelt
from opsgate.gateway import Gateway
from opsgate.policy import load_policy
from tests.adapters._support import ALLOWED, APPROVED, CONSTRAINT, DENIED_BY_LEA, shop, trail


@langchain_tool
def get_order(order_id: str, config: RunnableConfig) -> dict[str, Any]:
    """Look up an order in the system of record."""
    return {"order_id": order_id, "total": 120.0, "shop": config["configurable"]["shop"]}


@langchain_tool
def refund(
    order_id: str, amount: float, messages: Annotated[list[BaseMessage], InjectedState("messages")]
) -> dict[str, Any]:
    """Refund part or all of an order."""
    return {"refunded": amount, "messages_seen": len(messages)}


BELT = Toolbelt(
    [
        gate_function(get_order, scope="read", output="trusted"),
        gate_function(refund, scope="write", impact="high"),
    ]
)


def _call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}]
    )


def _graph(tools: list[Any], *turns: AIMessage) -> Any:
    model = GenericFakeChatModel(messages=iter(turns))

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=InMemorySaver())


def _shown(state: dict[str, Any]) -> dict[str, Any]:
    return {
        m.tool_call_id: json.loads(str(m.content))
        for m in state["messages"]
        if isinstance(m, ToolMessage)
    }


CONFIG: RunnableConfig = {"configurable": {"thread_id": "t-1", "shop": "acme"}}


async def test_allowed_denied_and_approved_calls_through_the_graph() -> None:
    gateway, run, recorder = shop(BELT)
    app = _graph(
        guard(gateway, run, [get_order, refund]),
        _call("get_order", {"order_id": "ORD-7"}, "c1"),
        _call("refund", {"order_id": "ORD-7", "amount": 500}, "c2"),
        _call("refund", {"order_id": "ORD-7", "amount": 80}, "c3"),
        AIMessage("Refunded 80 on ORD-7."),
    )

    paused = await app.ainvoke({"messages": [HumanMessage("Refund 80 on ORD-7")]}, CONFIG)
    [request] = paused["__interrupt__"]
    assert request.value["tool"] == "refund" and request.value["call_id"] == "c3"
    assert request.value["args"] == {"order_id": "ORD-7", "amount": 80}
    assert request.value["reason"] == "approval_required"
    assert trail(recorder, "c3") == []  # nothing decided yet: the call is the person's
    done = await app.ainvoke(Command(resume={"approved": True, "approver": "lea"}), CONFIG)

    assert done["messages"][-1].content == "Refunded 80 on ORD-7."
    shown = _shown(done)
    assert shown["c1"] == {"order_id": "ORD-7", "total": 120.0, "shop": "acme"}  # its config
    assert shown["c2"]["reason"] == "arg_constraint" and "at most 200" in shown["c2"]["error"]
    assert shown["c3"] == {"refunded": 80.0, "messages_seen": 6}  # its injected state
    assert trail(recorder, "c1") == ALLOWED
    assert trail(recorder, "c2") == CONSTRAINT
    assert trail(recorder, "c3") == APPROVED


async def test_a_denial_resumes_the_graph_and_reaches_the_model() -> None:
    gateway, run, recorder = shop(BELT)
    app = _graph(
        guard(gateway, run, [get_order, refund]),
        _call("refund", {"order_id": "ORD-7", "amount": 80}, "c1"),
        AIMessage("I could not refund it."),
    )
    await app.ainvoke({"messages": [HumanMessage("Refund 80 on ORD-7")]}, CONFIG)
    answer = {"approved": False, "approver": "lea", "reason": "over the limit"}
    done = await app.ainvoke(Command(resume=answer), CONFIG)
    shown = _shown(done)["c1"]
    assert shown["status"] == "approval_denied" and "over the limit" in shown["error"]
    assert trail(recorder, "c1") == DENIED_BY_LEA


async def test_a_resume_naming_nobody_goes_to_the_gateway_s_approver() -> None:
    gateway, run, recorder = shop(BELT)  # its approver: deny all
    app = _graph(
        guard(gateway, run, [refund]),
        _call("refund", {"order_id": "ORD-7", "amount": 80}, "c1"),
        AIMessage("done"),
    )
    await app.ainvoke({"messages": [HumanMessage("Refund 80 on ORD-7")]}, CONFIG)
    done = await app.ainvoke(Command(resume=True), CONFIG)
    assert _shown(done)["c1"]["status"] == "approval_denied"
    assert ("approval_denied", "opsgate:no-approver") in trail(recorder, "c1")


def test_the_model_is_offered_the_contract_not_the_injected_arguments() -> None:
    gateway, run, _ = shop(BELT)
    tools = guard(gateway, run, [get_order, refund])
    schemas = {t.name: t.tool_call_schema for t in tools}
    assert list(schemas["get_order"]["properties"]) == ["order_id"]
    assert list(schemas["refund"]["properties"]) == ["order_id", "amount"]


def test_a_sync_graph_runs_the_same_tools() -> None:
    gateway, run, recorder = shop(BELT)
    model = GenericFakeChatModel(
        messages=iter([_call("get_order", {"order_id": "ORD-7"}, "c1"), AIMessage("ok")])
    )

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(guard(gateway, run, [get_order])))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    done = graph.compile().invoke({"messages": [HumanMessage("status of ORD-7")]}, CONFIG)
    assert _shown(done)["c1"]["shop"] == "acme"
    assert trail(recorder, "c1") == ALLOWED


async def test_the_tool_call_id_and_the_runtime_reach_the_function() -> None:
    @langchain_tool
    def note(
        text: str, runtime: ToolRuntime, call_id: Annotated[str, InjectedToolCallId]
    ) -> dict[str, Any]:
        """Add an internal note."""
        return {"text": text, "call_id": call_id, "runtime": runtime.tool_call_id}

    belt = Toolbelt([gate_function(note, scope="write")])
    assert list(belt.get("note").parameters_schema["properties"]) == ["text"]
    policy = (
        'version: "1"\nworkflows:\n  w:\n    stage: autonomous_in_scope\n    tools: {note: {}}\n'
    )
    gateway = Gateway(belt, load_policy("p", belt, text=policy))
    run = gateway.start_run("w", invoker="maria", agent_id="bot-1", request="note hi")
    app = _graph(guard(gateway, run, [note]), _call("note", {"text": "hi"}, "c9"), AIMessage("ok"))
    done = await app.ainvoke({"messages": [HumanMessage("note hi")]}, CONFIG)
    assert _shown(done)["c9"] == {"text": "hi", "call_id": "c9", "runtime": "c9"}
