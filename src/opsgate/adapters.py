"""Adapters: tools of other frameworks pass the same gate.

- `OpenAIToolDispatcher` takes tool calls in OpenAI's chat-completions format (as the
  ``openai`` SDK, vLLM, Ollama and llama.cpp servers return them) and answers each with
  the ``tool`` message to append to the conversation. It offers the model only the tools
  the policy allows for the run's workflow and agent.
- `gate_function` wraps a plain callable (a LangChain/LlamaIndex tool's function, any
  SDK call) as a contract, and `GatedFunction` calls it through the gateway like a
  normal async function, raising `ToolCallBlocked` when the gate says no.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opsgate.contracts import Impact, Scope, ToolContract, Trust, build_contract
from opsgate.errors import OpsgateError
from opsgate.gateway import Gateway, Run, ToolOutcome

__all__ = ["GatedFunction", "OpenAIToolDispatcher", "ToolCallBlocked", "gate_function"]


class ToolCallBlocked(OpsgateError):
    """The gate did not run the call (denied, refused, approval denied, escalated, failed).

    Attributes:
        outcome: The full outcome, with the decision and its reason.
    """

    def __init__(self, outcome: ToolOutcome) -> None:
        self.outcome = outcome
        super().__init__(f"{outcome.tool}: {outcome.status.value}: {outcome.message}")


class OpenAIToolDispatcher:
    """Runs OpenAI-format tool calls of one run through the gateway."""

    def __init__(self, gateway: Gateway, run: Run) -> None:
        self.gateway = gateway
        self.run = run

    def tools(self) -> list[dict[str, Any]]:
        """The ``tools`` parameter for the model: only what the policy allows this run."""
        allowed = self.gateway.policy.allowed_tools(self.run.workflow, self.run.agent_id)
        return self.gateway.toolbelt.openai_tools(allowed)

    async def dispatch(self, tool_call: Mapping[str, Any] | Any) -> dict[str, Any]:
        """Run one tool call and return the ``{"role": "tool", ...}`` message.

        Args:
            tool_call: A dict ``{"id", "type": "function", "function": {"name",
                "arguments"}}`` or the SDK's object with the same attributes.
        """
        call_id, name, arguments = _parts(tool_call)
        outcome = await self.gateway.call(self.run, name, arguments, call_id=call_id or None)
        return {"role": "tool", "tool_call_id": call_id, "content": outcome.for_model()}

    async def dispatch_all(
        self, tool_calls: Sequence[Mapping[str, Any] | Any]
    ) -> list[dict[str, Any]]:
        """Run the calls of one model turn in order (each through the gate)."""
        return [await self.dispatch(call) for call in tool_calls]


def _parts(tool_call: Mapping[str, Any] | Any) -> tuple[str, str, Any]:
    if isinstance(tool_call, Mapping):
        function = tool_call.get("function") or {}
        call_id = tool_call.get("id") or ""
        name = function.get("name") if isinstance(function, Mapping) else None
        arguments = function.get("arguments") if isinstance(function, Mapping) else None
    else:
        function = getattr(tool_call, "function", None)
        call_id = getattr(tool_call, "id", "") or ""
        name = getattr(function, "name", None)
        arguments = getattr(function, "arguments", None)
    return str(call_id), str(name or ""), arguments


def gate_function(
    fn: Callable[..., Any],
    *,
    scope: Scope,
    impact: Impact = "low",
    name: str | None = None,
    description: str | None = None,
    secrets: Sequence[str] = (),
    output: Trust = "untrusted",
) -> ToolContract:
    """Wrap a foreign function as a contract (same rules as ``@tool``; scope required)."""
    return build_contract(
        fn,
        name=name,
        description=description,
        scope=scope,
        impact=impact,
        secrets=secrets,
        output=output,
    )


class GatedFunction:
    """A tool as an ordinary async function whose every call passes the gate.

    Example::

        lookup = GatedFunction(gateway, run, "get_order_status")
        status = await lookup(order_id="ORD-1001")   # raises ToolCallBlocked if denied
    """

    def __init__(self, gateway: Gateway, run: Run, tool: str) -> None:
        gateway.toolbelt.get(tool)  # unknown tool: fail at wiring time, not at call time
        self.gateway = gateway
        self.run = run
        self.tool = tool

    async def __call__(self, **kwargs: Any) -> Any:
        """Call the tool through the gate; return its result or raise `ToolCallBlocked`."""
        outcome = await self.gateway.call(self.run, self.tool, kwargs)
        if not outcome.ok:
            raise ToolCallBlocked(outcome)
        return outcome.result
