"""Model clients: one interface for chat / tool-calling models, wherever they run.

- `ModelClient`: the protocol (``complete(messages, tools, settings, retry_budget=)``).
- `OpenAICompatibleClient`: OpenAI, vLLM, Ollama, llama.cpp server, LM Studio, over HTTP,
  with counted retries (429 / 5xx / timeouts, back-off with jitter, ``Retry-After``).
- `complete_tool_call`: asks again, a capped number of times, when a tool call is invalid.
- `ModelRouter`: picks a model per step role (route / extract / plan / act / summarize /
  judge), with fallbacks, budgets and cost accounting, from a router file
  (`load_router_config`).
- The values: `Message`, `ToolCall`, `Usage`, `ModelResponse`, `ModelSettings`.

Failures are `opsgate.errors.ModelError` subclasses carrying ``model`` and ``attempts``;
`attempt_latencies(error)` and `failed_responses(error)` give what else they cost.
"""

from opsgate.models._cache import (
    CachingClient,
    ResponseCache,
)
from opsgate.models._client import ModelClient
from opsgate.models._embedded import DEFAULT_MODEL, EmbeddedServer, serve_forever
from opsgate.models._openai import OpenAICompatibleClient, parse_retry_after
from opsgate.models._repair import basic_validator, complete_tool_call, raw_output
from opsgate.models._router import EmbeddedEndpoint, ModelRouter
from opsgate.models._router_config import (
    ROLES,
    RouterConfig,
    catalogue_date,
    describe,
    load_router_config,
)
from opsgate.models._types import (
    Message,
    ModelResponse,
    ModelSettings,
    Role,
    ToolCall,
    ToolChoice,
    Usage,
    attempt_latencies,
    failed_responses,
)

__all__ = [
    "DEFAULT_MODEL",
    "ROLES",
    "CachingClient",
    "EmbeddedEndpoint",
    "EmbeddedServer",
    "Message",
    "ModelClient",
    "ModelResponse",
    "ModelRouter",
    "ModelSettings",
    "OpenAICompatibleClient",
    "ResponseCache",
    "Role",
    "RouterConfig",
    "ToolCall",
    "ToolChoice",
    "Usage",
    "attempt_latencies",
    "basic_validator",
    "catalogue_date",
    "complete_tool_call",
    "describe",
    "failed_responses",
    "load_router_config",
    "parse_retry_after",
    "raw_output",
    "serve_forever",
]
