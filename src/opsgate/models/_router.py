"""`ModelRouter`: a model per role, with its fallbacks, cache, constrained calls and meter.

The router is the only way the agent patterns call a model. For a call it builds the role's
chain of models, each one layered (`WrapperClient`): constrained tool calls for a model whose
``tool_mode`` is ``json_schema``, the response cache for a read-only role at temperature 0,
and a `MeteredClient` that checks the budget, prices the call and reports it to the payer's
`ModelMeter`; a `FallbackClient` asks them in order. The router knows nothing of gateways or
runs: the gateway offers a meter per run (``Gateway.meter(run)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from opsgate.errors import ConfigError
from opsgate.models._cache import CachingClient, ResponseCache
from opsgate.models._client import ModelClient
from opsgate.models._constrained import ConstrainedToolClient
from opsgate.models._fallback import FallbackClient
from opsgate.models._meter import ModelMeter
from opsgate.models._metering import DailyBudget, MeteredClient, estimate_tokens
from opsgate.models._openai import OpenAICompatibleClient
from opsgate.models._router_config import Role, RouterConfig, load_router_config
from opsgate.models._types import Message, ModelResponse, ModelSettings

__all__ = ["BudgetOverrides", "EmbeddedEndpoint", "ModelRouter"]

#: Given an embedded model id, starts it on first use and returns (base_url, api_key, model id).
EmbeddedEndpoint = Callable[[str], tuple[str, str, str]]


class BudgetOverrides(Protocol):
    """Where an operator's per-workflow budget overrides are read (`opsgate.cost.StoreBudgets`:
    the console's)."""

    def max_cost_per_task(self, workflow: str) -> float | None:
        """The override for ``workflow``, or None (the router file's budget applies)."""
        ...

    def daily_spend(self, workflow: str) -> float | None:
        """The daily budget override for ``workflow``, or None (the file's applies)."""
        ...

    def spent_today(self, workflow: str) -> float | None:
        """``workflow``'s production spend so far this UTC day (None: not known)."""
        ...


class ModelRouter:
    """Routes model calls by role.

    Args:
        config: The validated router file.
        clients: Ready clients by model name (tests, custom providers); others are built
            from the config on first use.
        embedded: How to reach the embedded model (started lazily).
        cache: Where cacheable responses are kept (None: no caching).
        budgets: An operator's per-workflow budget overrides, applied before the file's
            (`opsgate.cost.StoreBudgets`: those set in the console).
    """

    def __init__(
        self,
        config: RouterConfig,
        *,
        clients: Mapping[str, ModelClient] | None = None,
        embedded: EmbeddedEndpoint | None = None,
        cache: ResponseCache | None = None,
        budgets: BudgetOverrides | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self._budgets = budgets
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
            base_url, key, model_id = self._embedded(entry.model)
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
        """The workflow's max cost per task: an operator's override (``budgets``) if one is
        set, else the router file's, else None."""
        return self._budget(workflow, "max_cost_per_task")

    def daily_budget_for(self, workflow: str) -> float | None:
        """The workflow's daily spend limit: an operator's override if set, else the
        router file's, else None."""
        return self._budget(workflow, "daily_spend")

    def _budget(
        self, workflow: str, kind: Literal["max_cost_per_task", "daily_spend"]
    ) -> float | None:
        if self._budgets is not None:
            override = (
                self._budgets.max_cost_per_task(workflow)
                if kind == "max_cost_per_task"
                else self._budgets.daily_spend(workflow)
            )
            if override is not None:
                return override
        budget = self.config.budgets.get(workflow)
        return None if budget is None else getattr(budget, kind)

    def _daily(self, meter: ModelMeter) -> DailyBudget | None:
        """The daily budget a production run's calls are checked against: only where the
        router reads the ledger (``budgets``), which knows what today has spent."""
        if self._budgets is None or meter.purpose != "production":
            return None
        limit = self.daily_budget_for(meter.workflow)
        if limit is None:
            return None
        budgets, workflow = self._budgets, meter.workflow
        return DailyBudget(limit, lambda: budgets.spent_today(workflow))

    def layered(
        self, name: str, role: Role, settings: ModelSettings, meter: ModelMeter | None
    ) -> ModelClient:
        """Model ``name``'s client with the layers this call needs (innermost first:
        constrained tool calls, the response cache, the meter)."""
        client = self.client(name)
        if self.config.models[name].tool_mode == "json_schema":
            client = ConstrainedToolClient(client)
        if self.cache is not None and self.cache.cacheable(settings, role):
            client = CachingClient(client, self.cache, role)
        if meter is not None:
            client = MeteredClient(
                client,
                meter,
                role=role,
                model=name,
                price=self.config.price_of(name),
                budget_usd=self.budget_for(meter.workflow),
                daily=self._daily(meter),
            )
        return client

    async def complete(
        self,
        role: Role,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        meter: ModelMeter | None = None,
        model: str | None = None,
    ) -> tuple[ModelResponse, str]:
        """Call the role's model (falling back along its chain); returns the response and
        the name of the model that answered.

        ``model`` overrides the role's first choice (escalation to a larger model); a
        cacheable call (read-only role, temperature 0) is answered from the response cache
        when it can be, at no cost. With a ``meter`` (``Gateway.meter(run)``), every
        attempt, failed or not, is priced and recorded, the budget is checked before each
        model is asked, and retries are capped by what the meter allows.

        Raises:
            BudgetExceeded: the call would cross the budget (that model was not called).
            ModelError: every model of the chain failed (each failure recorded).
        """
        settings = settings or ModelSettings()
        chain = self.config.chain(role)
        if model is not None:
            if model not in self.config.models:
                raise ConfigError(f"unknown model `{model}` in the router")
            chain = [model, *[m for m in chain if m != model]]
        if len(chain) == 1:  # nothing to fall back to: the one model, without the wrapper
            return await self.layered(chain[0], role, settings, meter).complete(
                messages, tools, settings
            ), chain[0]
        fallback = FallbackClient([(n, self.layered(n, role, settings, meter)) for n in chain])
        return await fallback.answer(messages, tools, settings)
