"""What every adapter shares: `ToolCallBlocked`, `OpenAIToolDispatcher`, `gate_function` and
`GatedFunction`, and the per-call values a framework fills in.

A function written for a framework takes parameters the framework fills in at each call (a
pydantic-ai ``RunContext``, an Agents SDK ``RunContextWrapper``/``ToolContext``, a LangChain
``RunnableConfig``, LangGraph's injected state or ``ToolRuntime``). `gate_function` leaves
them out of the contract, so a model is never offered them. One bound with ``inject=`` gets
that value at every call; one left unbound is filled in, call by call, by the framework's
own value when the call comes through `opsgate.guard` (`framework_values`): the gateway
still runs the function, after its decision, with what the framework passed.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, get_args, get_origin

from opsgate.contracts import Impact, Scope, ToolContext, ToolContract, Trust, build_contract
from opsgate.errors import ContractError, OpsgateError, ToolError
from opsgate.gateway import Gateway, Run, ToolOutcome

__all__ = [
    "FRAMEWORK_INJECTED",
    "GatedFunction",
    "OpenAIToolDispatcher",
    "ToolCallBlocked",
    "framework_values",
    "gate_function",
]


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
#: MCP): a parameter of one of these is the framework's, never the model's. (opsgate's own
#: `ToolContext` is the gateway's, not a framework's, whatever its name.)
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

#: ``provide(parameter, framework type, annotation)``: the framework's value for one
#: parameter of the function, at this call.
Provider = Callable[[str, str, Any], Any]

_PROVIDERS: dict[tuple[str, str], Provider] = {}


@contextlib.contextmanager
def framework_values(run_id: str, call_id: str, provide: Provider) -> Iterator[None]:
    """While a call of run ``run_id`` with id ``call_id`` is in the gateway, its framework
    parameters are read from ``provide`` (the adapters do this around `Gateway.call`)."""
    key = (run_id, call_id)
    _PROVIDERS[key] = provide
    try:
        yield
    finally:
        if _PROVIDERS.get(key) is provide:
            del _PROVIDERS[key]


def gate_function(
    fn: Callable[..., Any] | Any,
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
        fn: A function, or a framework's tool made from one (an Agents SDK
            ``FunctionTool`` from ``@function_tool``, a pydantic-ai ``Tool``, a LangChain
            tool from ``@tool``): its function, name and description are used.
        inject: Fixed values for parameters the function's framework fills in: bound at
            every call. Framework parameters not named here are filled in at each call
            by the framework itself, through `opsgate.guard`. Either way they are left
            out of the model's schema.

    Raises:
        ContractError: ``inject`` names no parameter of the function, or the function
            cannot be a tool.
    """
    fn, framework_name, framework_description = _unwrap_framework_tool(fn)
    bound = _bind(fn, dict(inject or {}))
    return build_contract(
        bound,
        name=name or framework_name or getattr(fn, "__name__", None),
        description=description if description is not None else framework_description,
        scope=scope,
        impact=impact,
        secrets=secrets,
        output=output,
    )


def _unwrap_framework_tool(obj: Any) -> tuple[Callable[..., Any], str | None, str | None]:
    """The function inside a framework's tool object, with the tool's name and description."""
    if inspect.isfunction(obj) or inspect.ismethod(obj) or not hasattr(obj, "name"):
        return obj, None, None
    fn: Any = None
    for attribute in ("function", "coroutine", "func"):  # pydantic-ai; LangChain
        fn = getattr(obj, attribute, None)
        if callable(fn):
            break
    else:
        try:
            fn = obj.__wrapped__  # the Agents SDK's FunctionTool from @function_tool
        except AttributeError:
            fn = None
    if not callable(fn):
        raise ContractError(
            f"`{obj!r}` is a tool object whose function cannot be found; pass the function"
        )
    description = getattr(obj, "description", None)
    return fn, str(obj.name), description if isinstance(description, str) and description else None


def _injected_type(annotation: Any) -> str | None:
    """The framework type of a parameter's annotation, if it is one."""
    candidates = [annotation, *get_args(annotation)]
    if get_origin(annotation) is typing.Annotated:
        candidates += list(annotation.__metadata__)
    for candidate in candidates:
        origin = get_origin(candidate) or candidate
        if origin is ToolContext:
            return None  # opsgate's own: the gateway passes it
        label = getattr(origin, "__name__", None) or type(candidate).__name__
        if label in FRAMEWORK_INJECTED:
            return str(label)
    return None


def _is_own_context(annotation: Any) -> bool:
    return annotation is ToolContext or get_origin(annotation) is ToolContext


_CTX = "_opsgate_ctx"


def _bind(fn: Callable[..., Any], inject: dict[str, Any]) -> Callable[..., Any]:
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise ContractError(f"`{fn!r}` cannot be inspected: {exc}") from None
    tool_name = getattr(fn, "__name__", fn)
    where = f"tool `{tool_name}`"
    unknown = sorted(set(inject) - set(signature.parameters))
    if unknown:
        raise ContractError(f"{where}: inject names no parameter {', '.join(unknown)}")
    framework: dict[str, tuple[str, Any]] = {}
    own_ctx: str | None = None
    for param in signature.parameters.values():
        annotation = hints.get(param.name)
        if _is_own_context(annotation):
            own_ctx = param.name
        label = _injected_type(annotation)
        if label and param.name not in inject:
            framework[param.name] = (label, annotation)
    if not inject and not framework:
        return fn
    kept = [
        p for p in signature.parameters.values() if p.name not in inject and p.name not in framework
    ]
    annotations = {k: v for k, v in hints.items() if k not in inject and k not in framework}
    ctx_name = own_ctx
    if framework and own_ctx is None:
        ctx_name = _CTX
        kept.insert(0, inspect.Parameter(_CTX, inspect.Parameter.POSITIONAL_OR_KEYWORD))
        annotations[_CTX] = ToolContext[Any]

    def arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
        if not framework:
            return {**kwargs, **inject}
        ctx = kwargs[ctx_name] if own_ctx else kwargs.pop(_CTX)  # type: ignore[index]
        provide = _PROVIDERS.get((ctx.run_id, ctx.call_id))
        if provide is None:
            param, (label, _) = next(iter(framework.items()))
            raise ToolError(
                f"`{tool_name}` takes `{param}` ({label}) from its framework: call it through "
                "opsgate.guard, which passes the framework's value"
            )
        given = {param: provide(param, label, ann) for param, (label, ann) in framework.items()}
        return {**kwargs, **inject, **given}

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def bound_async(**kwargs: Any) -> Any:
            return await fn(**arguments(kwargs))

        bound: Callable[..., Any] = bound_async
    else:

        @functools.wraps(fn)
        def bound_sync(**kwargs: Any) -> Any:
            return fn(**arguments(kwargs))

        bound = bound_sync
    bound.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    bound.__annotations__ = annotations
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
