"""Model clients: one interface for chat / tool-calling models, wherever they run.

- `ModelClient`: the protocol (``complete(messages, tools, settings, retry_budget=)``).
- `OpenAICompatibleClient`: OpenAI, vLLM, Ollama, llama.cpp server, LM Studio, over HTTP,
  with counted retries (429 / 5xx / timeouts, back-off with jitter, ``Retry-After``).
- `complete_tool_call`: asks again, a capped number of times, when a tool call is invalid.
- `ModelRouter`: picks a model per step role (route / extract / plan / act / summarize /
  judge), from a router file (`load_router_config`), layering wrappers around each
  client: `ConstrainedToolClient` (tool calls as JSON-schema-constrained output),
  `CachingClient` (read-only calls answered once), `MeteredClient` (budget check, price,
  a `ModelCall` record to the payer's `ModelMeter`), `FallbackClient` (the next model when
  one fails). Each is a `WrapperClient` and usable alone.
- The values: `Message`, `ToolCall`, `Usage`, `ModelResponse`, `ModelSettings`.

Failures are `opsgate.errors.ModelError` subclasses carrying ``model`` and ``attempts``;
`attempt_latencies(error)` and `failed_responses(error)` give what else they cost.
"""

from opsgate.models._cache import (
    CachingClient,
    ResponseCache,
)
from opsgate.models._client import ModelClient
from opsgate.models._constrained import (
    FINAL_ANSWER,
    ConstrainedToolClient,
    as_plain_text,
    constrained_tool_schema,
    parse_constrained,
)
from opsgate.models._embedded import (
    DEFAULT_MODEL,
    EMBEDDED_MODELS,
    LARGE_MODEL,
    EmbeddedPool,
    EmbeddedServer,
    model_available,
    serve_forever,
)
from opsgate.models._fallback import FallbackClient
from opsgate.models._local import absent_models, local_models, resolve_local
from opsgate.models._meter import ModelCall, ModelMeter, genai_messages
from opsgate.models._metering import MeteredClient, estimate_tokens
from opsgate.models._openai import OpenAICompatibleClient, parse_retry_after
from opsgate.models._repair import basic_validator, complete_tool_call, raw_output
from opsgate.models._router import BudgetOverrides, EmbeddedEndpoint, ModelRouter
from opsgate.models._router_config import (
    ROLES,
    Price,
    RouterConfig,
    RouterRole,
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
from opsgate.models._wrapper import WrapperClient

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "FINAL_ANSWER",
    "LARGE_MODEL",
    "ROLES",
    "BudgetOverrides",
    "CachingClient",
    "ConstrainedToolClient",
    "EmbeddedEndpoint",
    "EmbeddedPool",
    "EmbeddedServer",
    "FallbackClient",
    "Message",
    "MeteredClient",
    "ModelCall",
    "ModelClient",
    "ModelMeter",
    "ModelResponse",
    "ModelRouter",
    "ModelSettings",
    "OpenAICompatibleClient",
    "Price",
    "ResponseCache",
    "Role",
    "RouterConfig",
    "RouterRole",
    "ToolCall",
    "ToolChoice",
    "Usage",
    "WrapperClient",
    "absent_models",
    "as_plain_text",
    "attempt_latencies",
    "basic_validator",
    "catalogue_date",
    "complete_tool_call",
    "constrained_tool_schema",
    "describe",
    "estimate_tokens",
    "failed_responses",
    "genai_messages",
    "load_router_config",
    "local_models",
    "model_available",
    "parse_constrained",
    "parse_retry_after",
    "raw_output",
    "resolve_local",
    "serve_forever",
]
