"""Adapters: tools of other frameworks pass the same gate.

- `guard` gates a run's tools for an agent framework in a few lines: plain async
  callables, OpenAI Agents SDK ``FunctionTool``s, a pydantic-ai toolset, or LangChain tools
  for LangGraph. Every call passes `Gateway.call`; a call the policy sends to a person
  pauses the run the framework's own way (an approval interruption, a deferred tool call,
  a LangGraph ``interrupt``), and the person's answer, with their identity, comes back
  through the gateway. A denial reaches the model as the tool's result, so it can repair.
  The frameworks are optional (``pip install 'opsgate[adapters]'``); each is imported only
  when asked for.
- `OpenAIToolDispatcher` takes tool calls in OpenAI's chat-completions format (as the
  ``openai`` SDK, vLLM, Ollama and llama.cpp servers return them) and answers each with
  the ``tool`` message to append to the conversation. It offers the model only the tools
  the policy allows for the run's workflow and agent.
- `gate_function` wraps a plain callable (or a framework's tool object) as a contract, and
  `GatedFunction` calls it through the gateway like a normal async function, raising
  `ToolCallBlocked` when the gate says no. A parameter its framework fills in (a run
  context, a config, injected state) is never offered to the model: bound with
  ``inject=``, or filled in at each call by the framework through `guard`.
"""

from opsgate.adapters._calls import answer_from
from opsgate.adapters._core import (
    FRAMEWORK_INJECTED,
    GatedFunction,
    OpenAIToolDispatcher,
    ToolCallBlocked,
    gate_function,
)
from opsgate.adapters._guard import Framework, GuardedCallable, guard

__all__ = [
    "FRAMEWORK_INJECTED",
    "Framework",
    "GatedFunction",
    "GuardedCallable",
    "OpenAIToolDispatcher",
    "ToolCallBlocked",
    "answer_from",
    "gate_function",
    "guard",
]
