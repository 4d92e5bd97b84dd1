"""Adapters: tools of other frameworks pass the same gate.

- `OpenAIToolDispatcher` takes tool calls in OpenAI's chat-completions format (as the
  ``openai`` SDK, vLLM, Ollama and llama.cpp servers return them) and answers each with
  the ``tool`` message to append to the conversation. It offers the model only the tools
  the policy allows for the run's workflow and agent.
- `gate_function` wraps a plain callable (a LangChain/LlamaIndex tool's function, any
  SDK call) as a contract, and `GatedFunction` calls it through the gateway like a
  normal async function, raising `ToolCallBlocked` when the gate says no. A parameter its
  framework fills in (a run context, a config, injected state) is bound with ``inject=``
  and never offered to the model; one left unbound is refused at wiring time.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, get_args, get_origin

from opsgate.contracts import Impact, Scope, ToolContract, Trust, build_contract
from opsgate.errors import ContractError, OpsgateError
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


#: Types the frameworks fill in themselves (pydantic-ai, LangChain/LangGraph, the Agents SDK,
#: MCP): a parameter of one of these is the framework's, never the model's.
FRAMEWORK_INJECTED = frozenset(
    {
        "RunContext",
        "RunnableConfig",
        "ToolRuntime",
        "InjectedState",
        "InjectedStore",
        "InjectedToolArg",
        "InjectedToolCallId",
        "CallbackManagerForToolRun",
        "AsyncCallbackManagerForToolRun",
        "ToolContext",
        "RunContextWrapper",
        "Context",
    }
)


def gate_function(
    fn: Callable[..., Any],
    *,
    scope: Scope,
    impact: Impact = "low",
    name: str | None = None,
    description: str | None = None,
    secrets: Sequence[str] = (),
    output: Trust = "untrusted",
    inject: Mapping[str, Any] | None = None,
) -> ToolContract:
    """Wrap a foreign function as a contract (same rules as ``@tool``; scope required).

    Args:
        inject: Values for the parameters the function's framework fills in (a run
            context, a config): bound at every call, left out of the model's schema.

    Raises:
        ContractError: a parameter of a framework-injected type is not in ``inject``, or
            ``inject`` names no parameter of the function.
    """
    bound = _bind(fn, dict(inject or {}))
    return build_contract(
        bound,
        name=name or getattr(fn, "__name__", None),
        description=description,
        scope=scope,
        impact=impact,
        secrets=secrets,
        output=output,
    )


def _injected_type(annotation: Any) -> str | None:
    """The framework type of a parameter's annotation, if it is one."""
    candidates = [annotation, *get_args(annotation)]
    if get_origin(annotation) is typing.Annotated:
        candidates += list(annotation.__metadata__)
    for candidate in candidates:
        origin = get_origin(candidate) or candidate
        label = getattr(origin, "__name__", None) or type(candidate).__name__
        if label in FRAMEWORK_INJECTED:
            return str(label)
    return None


def _bind(fn: Callable[..., Any], inject: dict[str, Any]) -> Callable[..., Any]:
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise ContractError(f"`{fn!r}` cannot be inspected: {exc}") from None
    where = f"tool `{getattr(fn, '__name__', fn)}`"
    unknown = sorted(set(inject) - set(signature.parameters))
    if unknown:
        raise ContractError(f"{where}: inject names no parameter {', '.join(unknown)}")
    for param in signature.parameters.values():
        framework = _injected_type(hints.get(param.name))
        if framework and param.name not in inject:
            raise ContractError(
                f"{where}: parameter `{param.name}` ({framework}) is filled in by its framework; "
                f"bind it with inject={{'{param.name}': ...}} so the model is never offered it"
            )
    if not inject:
        return fn
    kept = [p for p in signature.parameters.values() if p.name not in inject]
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def bound_async(**kwargs: Any) -> Any:
            return await fn(**kwargs, **inject)

        bound: Callable[..., Any] = bound_async
    else:

        @functools.wraps(fn)
        def bound_sync(**kwargs: Any) -> Any:
            return fn(**kwargs, **inject)

        bound = bound_sync
    bound.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    bound.__annotations__ = {k: v for k, v in hints.items() if k not in inject}
    del bound.__wrapped__  # type: ignore[attr-defined]  # the schema is the bound signature
    return bound


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
