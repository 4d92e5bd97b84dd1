"""`ModelRouter`: a model per role, fallbacks, prices, budgets, and every call recorded.

The router is the only way the agent patterns call a model. For a role it tries the
role's chain of models in order (a failed model is recorded and the next one tried); it
prices each call from the router file (a local model's price is a labelled estimate) and
hands tokens, cost, latency and attempts to the gateway, which adds them to the run and
records a ``model_call`` event. Before each call it estimates the call's cost and refuses
(`BudgetExceeded`) a call that would cross the run's budget, so the run can escalate with
its progress kept instead of overspending.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from opsgate.errors import BudgetExceeded, ConfigError, ModelError, ModelOutputError
from opsgate.models._cache import ResponseCache
from opsgate.models._client import ModelClient
from opsgate.models._grammar import enforceable_schema
from opsgate.models._openai import OpenAICompatibleClient
from opsgate.models._repair import raw_output
from opsgate.models._router_config import Role, RouterConfig, load_router_config
from opsgate.models._types import Message, ModelResponse, ModelSettings, ToolCall

if TYPE_CHECKING:
    from opsgate.gateway import Gateway, Run

__all__ = [
    "FINAL_ANSWER",
    "EmbeddedEndpoint",
    "ModelRouter",
    "constrained_tool_schema",
    "estimate_tokens",
]

#: Starts the embedded model on first use and returns (base_url, api_key, model id).
EmbeddedEndpoint = Callable[[], tuple[str, str, str]]

_CHARS_PER_TOKEN = 4  # a deliberately rough estimate: budgets need an upper bound, not a count


FINAL_ANSWER = "final_answer"


def constrained_tool_schema(tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON schema of "one call of one of these tools, or a final answer", its patterns
    in the subset a grammar-constrained server enforces (`enforceable_schema`)."""
    branches: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                "arguments": enforceable_schema(
                    t["function"].get("parameters") or {"type": "object"}
                ),
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    branches.append(
        {
            "type": "object",
            "properties": {
                "name": {"const": FINAL_ANSWER},
                "arguments": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                    "additionalProperties": False,
                },
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
    )
    return {"name": "tool_call", "strict": True, "schema": {"anyOf": branches}}


def _as_plain_text(messages: Sequence[Message]) -> list[Message]:
    """History without tool-call structure, for a request that declares no tools."""
    out: list[Message] = []
    names: dict[str | None, str] = {}  # call id -> tool: the model reads names, not ids
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            calls = [{"name": c.name, "arguments": _loads(c.arguments)} for c in m.tool_calls]
            names.update({c.id: c.name for c in m.tool_calls})
            try:
                text = orjson.dumps(calls[0] if len(calls) == 1 else calls).decode()
            except TypeError:  # arguments nested too deep to write back: quote them as sent
                calls = [{"name": c.name, "arguments": c.arguments} for c in m.tool_calls]
                text = orjson.dumps(calls[0] if len(calls) == 1 else calls).decode()
            out.append(Message.assistant(text))
        elif m.role == "tool":
            tool = names.get(m.tool_call_id, "tool")
            out.append(Message.user(f"Result of {tool}: {m.content}"))
        else:
            out.append(m)
    return out


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _parse_constrained(response: ModelResponse, turn: int = 0) -> ModelResponse:
    """Turn constrained output into a tool call, or into the final text.

    The call id is derived from the turn (the conversation's length) and the text: unique
    within a run, where the conversation only grows, so a repeated identical call is a new
    call; and deterministic, so that the id a model reads back in the next prompt never
    makes two runs of the same task differ.
    """
    data = _loads(response.text or "")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return response  # not JSON after all: the executor treats it as text
    arguments = data.get("arguments")
    if data["name"] == FINAL_ANSWER:
        text = arguments.get("text") if isinstance(arguments, dict) else None
        return dataclasses.replace(response, text=str(text or ""), tool_calls=())
    try:
        text = orjson.dumps(arguments if arguments is not None else {}).decode()
    except TypeError as exc:  # nested deeper than JSON is written (orjson: 254 levels)
        raise ModelOutputError(
            f"model `{response.model}` answered a call of `{data['name']}` whose arguments "
            f"are not JSON data ({exc})",
            raw=raw_output(response),
            model=response.model,
            attempts=response.attempts,
        ) from None
    call = ToolCall(
        id="call_" + hashlib.sha256(f"{turn}:{response.text or ''}".encode()).hexdigest()[:16],
        name=data["name"],
        arguments=text,
    )
    return dataclasses.replace(response, text=None, tool_calls=(call,), finish_reason="tool_calls")


def estimate_tokens(messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None) -> int:
    """A rough prompt-token count (characters / 4), for budget checks before a call."""
    chars = sum(
        len(m.content or "") + sum(len(c.arguments) + len(c.name) for c in m.tool_calls)
        for m in messages
    )
    if tools:
        chars += len(orjson.dumps(list(tools)))
    return chars // _CHARS_PER_TOKEN + 4 * len(messages)


class ModelRouter:
    """Routes model calls by role.

    Args:
        config: The validated router file.
        clients: Ready clients by model name (tests, custom providers); others are built
            from the config on first use.
        embedded: How to reach the embedded model (started lazily).
        cache: Where cacheable responses are kept (None: no caching).
    """

    def __init__(
        self,
        config: RouterConfig,
        *,
        clients: Mapping[str, ModelClient] | None = None,
        embedded: EmbeddedEndpoint | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self._clients: dict[str, ModelClient] = dict(clients or {})
        self._embedded = embedded

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> ModelRouter:
        """A router from a router YAML file."""
        return cls(load_router_config(path), **kwargs)

    def client(self, name: str) -> ModelClient:
        """The client of model ``name`` (built on first use)."""
        found = self._clients.get(name)
        if found is not None:
            return found
        entry = self.config.models.get(name)
        if entry is None:
            raise ConfigError(f"unknown model `{name}` in the router")
        if entry.provider == "embedded":
            if self._embedded is None:
                raise ConfigError(
                    f"model `{name}` is the embedded model, but no embedded server is "
                    "available here; give it a base_url of an OpenAI-compatible server instead"
                )
            base_url, key, model_id = self._embedded()
            client: ModelClient = OpenAICompatibleClient(
                base_url,
                model_id,
                api_key=key,
                provider="llama.cpp",
                timeout_s=entry.timeout_s,
            )
        else:
            assert entry.base_url is not None  # validated by the config
            client = OpenAICompatibleClient(
                entry.base_url,
                entry.model,
                api_key_env=entry.api_key_env,
                provider=entry.provider,
                timeout_s=entry.timeout_s,
            )
        self._clients[name] = client
        return client

    def estimate_cost(
        self,
        name: str,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None,
        max_tokens: int,
    ) -> float:
        """An upper estimate of one call's cost (prompt estimate + ``max_tokens`` out)."""
        return self.config.price_of(name).cost(estimate_tokens(messages, tools), max_tokens)

    def budget_for(self, workflow: str) -> float | None:
        """The workflow's max cost per task, if the router file sets one."""
        budget = self.config.budgets.get(workflow)
        return None if budget is None else budget.max_cost_per_task

    async def complete(
        self,
        role: Role,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        gateway: Gateway | None = None,
        run: Run | None = None,
        model: str | None = None,
    ) -> tuple[ModelResponse, str]:
        """Call the role's model (falling back along its chain); returns the response and
        the name of the model that answered.

        ``model`` overrides the role's first choice (escalation to a larger model); a
        cacheable call (read-only role, temperature 0) is answered from the response cache
        when it can be, at no cost.

        Every attempt, failed or not, is priced and recorded in ``run`` through
        ``gateway``. Retries are capped by what is left of the run's retry cap.

        Raises:
            BudgetExceeded: the call would cross the run's budget (nothing was called).
            ModelError: every model of the chain failed (each failure recorded).
        """
        settings = settings or ModelSettings()
        chain = self.config.chain(role)
        if model is not None:
            if model not in self.config.models:
                raise ConfigError(f"unknown model `{model}` in the router")
            chain = [model, *[m for m in chain if m != model]]
        max_tokens = settings.max_tokens or 512
        retry_budget = None
        if gateway is not None and run is not None:
            self._check_budget(chain[0], messages, tools, max_tokens, gateway, run)
            limit = gateway.policy.caps(run.workflow, run.agent_id).max_retries
            if limit is not None:
                retry_budget = max(0, limit - run.retries)
        last: ModelError | None = None
        for name in chain:
            client = self.client(name)
            price = self.config.price_of(name)
            constrained = bool(tools) and self.config.models[name].tool_mode == "json_schema"
            started = time.perf_counter()
            cache_key = None
            if self.cache is not None and self.cache.cacheable(settings, role):
                cache_key = self.cache.key(name, messages, tools, settings)
            try:
                cached = None if cache_key is None else self.cache.get(cache_key)  # type: ignore[union-attr]
                if cached is not None:
                    response = cached
                elif constrained and tools:
                    response = await self._constrained(
                        client, messages, tools, settings, retry_budget
                    )
                else:
                    response = await client.complete(
                        messages, tools, settings, retry_budget=retry_budget
                    )
            except ModelError as exc:
                last = exc
                if gateway is not None and run is not None:
                    gateway.record_model_call(
                        run,
                        role=role,
                        model=name,
                        provider=client.provider,
                        input_tokens=0,
                        output_tokens=0,
                        cost_usd=0.0,
                        latency_s=time.perf_counter() - started,
                        estimate=price.estimate,
                        attempts=max(1, exc.attempts),
                        error_type=type(exc).__name__,
                    )
                continue
            if cache_key is not None and not response.cache_hit:
                self.cache.put(cache_key, name, response)  # type: ignore[union-attr]
            cost = price.cost(
                response.usage.input_tokens,
                response.usage.output_tokens,
                response.usage.cached_input_tokens,
            )
            if response.cache_hit:
                cost = 0.0
            if gateway is not None and run is not None:
                gateway.record_model_call(
                    run,
                    role=role,
                    model=name,
                    provider=client.provider,
                    input_tokens=response.usage.input_tokens,
                    output_tokens=response.usage.output_tokens,
                    cached_input_tokens=response.usage.cached_input_tokens,
                    cost_usd=cost,
                    latency_s=response.latency_s,
                    estimate=price.estimate,
                    attempts=max(1, response.attempts),
                    cache_hit=response.cache_hit,
                )
            return response, name
        assert last is not None
        raise last

    async def _constrained(
        self,
        client: ModelClient,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]],
        settings: ModelSettings,
        retry_budget: int | None,
    ) -> ModelResponse:
        """A tool call as JSON-schema-constrained output: the answer is one of the tools
        (name as a constant, arguments as that tool's schema) or a final answer, so it
        always parses; the gateway still validates it. Portable to any OpenAI-compatible
        server that supports ``response_format`` (llama.cpp, vLLM, Ollama, OpenAI)."""
        schema = constrained_tool_schema(tools)
        menu = "\n".join(
            f"- {t['function']['name']}: {t['function'].get('description', '')} arguments: "
            f"{orjson.dumps(t['function'].get('parameters', {})).decode()}"
            for t in tools
        )
        instructions = Message.system(
            'To use a tool, answer with JSON {"name": <tool>, "arguments": {...}}. When '
            'you are done (or must ask the customer something), answer with {"name": '
            f'"{FINAL_ANSWER}", "arguments": {{"text": ...}}}}. One call per answer.'
            f"\nTools:\n{menu}"
        )
        plain = [*_as_plain_text(messages), instructions]
        response = await client.complete(
            plain,
            None,
            dataclasses.replace(settings, json_schema=schema, tool_choice="auto"),
            retry_budget=retry_budget,
        )
        return _parse_constrained(response, turn=len(messages))

    def _check_budget(
        self,
        name: str,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None,
        max_tokens: int,
        gateway: Gateway,
        run: Run,
    ) -> None:
        limits = [
            b
            for b in (
                self.budget_for(run.workflow),
                gateway.policy.caps(run.workflow, run.agent_id).max_cost_usd,
            )
            if b is not None
        ]
        if not limits:
            return
        budget = min(limits)
        estimate = self.estimate_cost(name, messages, tools, max_tokens)
        if run.cost_usd + estimate > budget:
            raise BudgetExceeded(
                f"the next model call (~${estimate:.4f}) would take the run past its budget "
                f"of ${budget:.4f} (spent ${run.cost_usd:.4f})",
                budget_usd=budget,
                spent_usd=run.cost_usd,
                next_usd=estimate,
            )
