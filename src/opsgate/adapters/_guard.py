"""`guard`: a framework's tools, each call through the gateway, in a few lines.

What every framework adapter does with a call the model made:

1. If the policy says the call needs a person, the adapter pauses the run the framework's
   way (the Agents SDK's approval interruption, pydantic-ai's deferred approval, a LangGraph
   ``interrupt``) instead of blocking inside the gateway. Whether it does is the policy's
   decision on the call as it stands (`Gateway.preview`): nothing is recorded yet.
2. When the person's answer comes back through the framework, with who they are, the call
   goes through `Gateway.call` with that answer (``approval=``): the call is decided afresh
   (a policy that now denies it wins), and the trail holds the proposal, the decision, the
   approval request, the answer with the approver's identity and the result, as for any
   approval. The gateway's own approver is not asked.
3. Every other call goes through `Gateway.call` as it is. What the model gets back is
   `ToolOutcome.for_model()`: the result, or the denial with its reason code and message, so
   it can repair the call.

A framework's own parameters (its run context, config, injected state) never reach the
model's schema: the schema is the contract's, and the framework's values reach the function
through `framework_values` while the gateway runs it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Literal

from opsgate.adapters._calls import gated_call
from opsgate.contracts import ToolContract
from opsgate.errors import ContractError
from opsgate.gateway import Gateway, Run, ToolOutcome

__all__ = [
    "Framework",
    "GuardedCallable",
    "contract_for",
    "guard",
]

Framework = Literal["callable", "openai-agents", "pydantic-ai", "langchain"]
_FRAMEWORKS: tuple[str, ...] = ("callable", "openai-agents", "pydantic-ai", "langchain")


def guard(gateway: Gateway, run: Run, tools: Any, *, framework: Framework | None = None) -> Any:
    """Gate tools for one run: each call the model makes passes ``gateway.call``.

    Each tool is named by its contract (a `ToolContract`, a tool name, the function given
    to `gate_function` or ``@tool``, or a framework's tool object of the same name); the
    contract must be in the gateway's toolbelt.

    Args:
        gateway: The gateway (its toolbelt holds the tools' contracts).
        run: The run the calls belong to (`Gateway.start_run`).
        tools: One tool, or a list; for pydantic-ai also a toolset (its tools).
        framework: What to build: ``"callable"`` (async functions returning the result, or
            the denial as text), ``"openai-agents"`` (a list of ``FunctionTool``,
            `GuardedAgentTools`), ``"pydantic-ai"`` (a ``FunctionToolset``,
            `GuardedToolset`) or ``"langchain"`` (a list of LangChain tools for LangGraph's
            ``ToolNode``). Default: the framework of the tool objects given, else
            ``"callable"``.

    Returns:
        For ``"callable"``, a `GuardedCallable` (one tool) or a list of them.

    Raises:
        ContractError: a tool has no contract in the toolbelt, or the framework is unknown
            or not installed (``pip install 'opsgate[adapters]'``).
    """
    single = not isinstance(tools, (list, tuple))
    items = _expand([tools] if single else list(tools))
    chosen = framework or _detect(items)
    if chosen not in _FRAMEWORKS:
        raise ContractError(f"unknown framework `{chosen}`; one of {', '.join(_FRAMEWORKS)}")
    contracts = [contract_for(gateway, item) for item in items]
    if chosen == "callable":
        made = [GuardedCallable(gateway, run, c) for c in contracts]
        return made[0] if single and len(made) == 1 else made
    try:
        if chosen == "openai-agents":
            from opsgate.adapters._openai_agents import guard_openai_agents

            return guard_openai_agents(gateway, run, contracts)
        if chosen == "pydantic-ai":
            from opsgate.adapters._pydantic_ai import guard_pydantic_ai

            return guard_pydantic_ai(gateway, run, contracts)
        from opsgate.adapters._langgraph import guard_langchain

        return guard_langchain(gateway, run, contracts)
    except ImportError as exc:
        raise ContractError(
            f"framework `{chosen}` is not installed ({exc}); pip install 'opsgate[adapters]'"
        ) from None


def _expand(items: list[Any]) -> list[Any]:
    """A pydantic-ai ``FunctionToolset`` stands for its tools."""
    out: list[Any] = []
    for item in items:
        tools = getattr(item, "tools", None)
        if type(item).__module__.startswith("pydantic_ai") and isinstance(tools, Mapping):
            out.extend(tools.values())
        else:
            out.append(item)
    return out


def _detect(items: list[Any]) -> Framework:
    for item in items:
        module = type(item).__module__
        if module.startswith("agents."):
            return "openai-agents"
        if module.startswith("pydantic_ai"):
            return "pydantic-ai"
        if module.startswith(("langchain_core", "langchain.", "langgraph")):
            return "langchain"
    return "callable"


def contract_for(gateway: Gateway, item: Any) -> ToolContract:
    """The contract in the gateway's toolbelt that ``item`` names.

    Raises:
        ContractError: none does.
    """
    name: Any
    if isinstance(item, ToolContract):
        name = item.name
    elif isinstance(item, str):
        name = item
    else:
        name = getattr(item, "name", None) or getattr(item, "__name__", None)
    if not isinstance(name, str) or not name:
        raise ContractError(f"`{item!r}` names no tool; pass a contract, a name or a function")
    contract = gateway.toolbelt.find(name)
    if contract is None:
        raise ContractError(
            f"tool `{name}` has no contract in the gateway's toolbelt; build one with "
            f"gate_function({name}, scope=...) or @tool and put it in the Toolbelt"
        )
    return contract


class GuardedCallable:
    """A tool as a plain async function for any agent loop: each call passes the gate.

    Called with the model's arguments as keywords, it returns the tool's result, or, when
    the gate did not run it, the outcome as the model should read it (JSON text with the
    reason code and message: `ToolOutcome.for_model`). ``last_outcome`` keeps the whole
    outcome. Its signature is the contract's (what a framework reading signatures offers
    the model). A call that needs a person waits for the gateway's approver.
    """

    def __init__(self, gateway: Gateway, run: Run, contract: ToolContract) -> None:
        self.gateway = gateway
        self.run = run
        self.contract = contract
        self.last_outcome: ToolOutcome | None = None
        self.__name__ = contract.name
        self.__doc__ = contract.description
        self.__signature__ = _model_signature(contract)

    async def __call__(self, **kwargs: Any) -> Any:
        """Call the tool through the gate."""
        outcome = await gated_call(self.gateway, self.run, self.contract.name, kwargs, call_id=None)
        self.last_outcome = outcome
        return outcome.result if outcome.ok else outcome.for_model()


def _model_signature(contract: ToolContract) -> inspect.Signature:
    params = []
    for name, field in contract.args_model.model_fields.items():
        default = inspect.Parameter.empty if field.is_required() else field.default
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=field.annotation
            )
        )
    return inspect.Signature(params)
