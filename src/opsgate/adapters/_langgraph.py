"""LangChain tools for LangGraph: approvals as a LangGraph ``interrupt``.

Each tool offers the model its contract's schema (LangGraph's ``ToolNode`` runs it). A call
the policy sends to a person calls ``interrupt(...)`` with the request (tool, arguments,
reason, rule, message): the graph stops there (it needs a checkpointer) and the caller
sees the request in the result's ``__interrupt__``. Resume it with the person's answer,
naming them: ``Command(resume={"approved": True, "approver": "maria", "reason": "..."})``.
The call then passes `Gateway.call` with that answer, so the trail names the approver, and
a denial reaches the model as the tool's result, like every denial. A resume value that
names nobody (``Command(resume=True)``) is not taken as an answer: the call then waits for
the gateway's approver instead.

The function's LangGraph parameters (``ToolRuntime``, ``RunnableConfig``, injected state,
store or tool call id) are filled in from the ``ToolRuntime`` that ``ToolNode`` passes.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Sequence
from typing import Any, get_args

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import InjectedState, ToolRuntime
from langgraph.types import interrupt

from opsgate.adapters._calls import answer_from, gated_call, pending_approval
from opsgate.contracts import ToolContract
from opsgate.errors import ContractError
from opsgate.gateway import Gateway, Run

__all__ = ["guard_langchain"]


def guard_langchain(
    gateway: Gateway, run: Run, contracts: Sequence[ToolContract]
) -> list[BaseTool]:
    """The contracts as gated LangChain tools (see the module)."""
    return [_tool(gateway, run, c) for c in contracts]


def _tool(gateway: Gateway, run: Run, contract: ToolContract) -> BaseTool:
    name = contract.name

    async def call(runtime: ToolRuntime = None, **arguments: Any) -> str:  # type: ignore[assignment]
        call_id = runtime.tool_call_id if runtime is not None else None
        answer = None
        decision = pending_approval(gateway, run, name, arguments)
        if decision is not None:
            value = interrupt(
                {
                    "opsgate": "approval_required",
                    "run_id": run.run_id,
                    "call_id": call_id,
                    "tool": name,
                    "args": arguments,
                    "reason": decision.reason.value,
                    "rule": decision.rule,
                    "message": decision.message,
                }
            )
            answer = answer_from(value)

        def provide(param: str, label: str, annotation: Any) -> Any:
            return _from_runtime(runtime, param, label, annotation)

        outcome = await gated_call(
            gateway, run, name, arguments, call_id=call_id, provide=provide, answer=answer
        )
        return outcome.for_model()

    def call_sync(runtime: ToolRuntime = None, **arguments: Any) -> str:  # type: ignore[assignment]
        return asyncio.run(call(runtime, **arguments))

    return StructuredTool(
        name=name,
        description=contract.description,
        args_schema=contract.parameters_schema,
        func=call_sync,
        coroutine=call,
    )


def _from_runtime(runtime: ToolRuntime | None, param: str, label: str, annotation: Any) -> Any:
    """The value LangGraph would have injected into ``param``."""
    if runtime is None:
        raise ContractError(
            f"parameter `{param}` ({label}) is filled in by LangGraph's ToolNode; run the "
            "tool there"
        )
    if label == "ToolRuntime":
        return runtime
    if label == "RunnableConfig":
        return runtime.config
    if label == "InjectedToolCallId":
        return runtime.tool_call_id
    if label == "InjectedStore":
        return runtime.store
    if label == "InjectedState":
        state = runtime.state
        for marker in get_args(annotation)[1:] if _annotated(annotation) else ():
            field = getattr(marker, "field", None)
            if isinstance(marker, InjectedState) and field:
                return state[field] if isinstance(state, dict) else getattr(state, field)
        return state
    raise ContractError(f"parameter `{param}` ({label}) is not one LangGraph fills in")


def _annotated(annotation: Any) -> bool:
    return typing.get_origin(annotation) is typing.Annotated
