"""`MeteredClient`: every model call priced, checked against the budget and reported.

Before a call it estimates the call's cost (prompt estimate + ``max_tokens`` out) and
refuses (`BudgetExceeded`) one that would cross the payer's budget, so that a run can
escalate with its progress kept instead of overspending. After it, successful or failed,
the call is priced and handed to the `ModelMeter` as a `ModelCall`. Retries are capped by
what the meter says is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from opsgate.errors import BudgetExceeded, ModelError
from opsgate.models._client import ModelClient
from opsgate.models._meter import ModelCall, ModelMeter
from opsgate.models._router_config import Price
from opsgate.models._types import Message, ModelResponse, ModelSettings
from opsgate.models._wrapper import WrapperClient

__all__ = ["DEFAULT_MAX_TOKENS", "MeteredClient", "estimate_tokens"]

_CHARS_PER_TOKEN = 4  # a deliberately rough estimate: budgets need an upper bound, not a count

#: The output tokens a budget check assumes when the settings cap none.
DEFAULT_MAX_TOKENS = 512


def estimate_tokens(messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None) -> int:
    """A rough prompt-token count (characters / 4), for budget checks before a call."""
    chars = sum(
        len(m.content or "") + sum(len(c.arguments) + len(c.name) for c in m.tool_calls)
        for m in messages
    )
    if tools:
        chars += len(orjson.dumps(list(tools)))
    return chars // _CHARS_PER_TOKEN + 4 * len(messages)


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass(frozen=True, slots=True)
class DailyBudget:
    """A workflow's daily spend limit and how to read what today has spent (the ledger:
    it may lag the calls of the last second or two, which the limit then absorbs)."""

    limit_usd: float
    spent_today: Callable[[], float | None]


class MeteredClient(WrapperClient):
    """Meters ``inner`` (the router's model ``model``, playing ``role``) into ``meter``.

    Args:
        inner: The client asked.
        meter: Who pays, and is told.
        role: The step role the call plays.
        model: The router's name of the model.
        price: Its price.
        budget_usd: The router's budget for the meter's workflow, if any (the meter's own
            cap applies as well: the lower one holds).
        daily: The workflow's daily budget, for a production run (None: unchecked).
    """

    def __init__(
        self,
        inner: ModelClient,
        meter: ModelMeter,
        *,
        role: str,
        model: str,
        price: Price,
        budget_usd: float | None = None,
        daily: DailyBudget | None = None,
    ) -> None:
        super().__init__(inner)
        self.daily = daily
        self.meter = meter
        self.role = role
        self.model = model
        self.price = price
        self.budget_usd = budget_usd

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> ModelResponse:
        """The inner client's answer, recorded.

        Raises:
            BudgetExceeded: the call would cross the budget (nothing was called).
            ModelError: the inner client's failure (recorded first).
        """
        max_tokens = (settings.max_tokens if settings else None) or DEFAULT_MAX_TOKENS
        self.check_budget(messages, tools, max_tokens)
        retry_budget = _least(retry_budget, self.meter.retry_budget())
        started = time.perf_counter()
        try:
            response = await self.inner.complete(
                messages, tools, settings, retry_budget=retry_budget
            )
        except ModelError as exc:
            self.meter.record(
                self._call(
                    messages,
                    settings,
                    latency_s=time.perf_counter() - started,
                    attempts=max(1, exc.attempts),
                    error_type=type(exc).__name__,
                )
            )
            raise
        usage = response.usage
        cost = 0.0
        if not response.cache_hit:
            cost = self.price.cost(
                usage.input_tokens, usage.output_tokens, usage.cached_input_tokens
            )
        self.meter.record(
            self._call(
                messages,
                settings,
                response_model=response.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                cost_usd=cost,
                latency_s=response.latency_s,
                attempts=max(1, response.attempts),
                cache_hit=response.cache_hit,
                finish_reason=response.finish_reason,
                response=response,
            )
        )
        return response

    def _call(
        self, messages: Sequence[Message], settings: ModelSettings | None, **fields: Any
    ) -> ModelCall:
        return ModelCall(
            temperature=None if settings is None else settings.temperature,
            max_tokens=None if settings is None else settings.max_tokens,
            role=self.role,
            model=self.model,
            provider=self.inner.provider,
            request_model=self.inner.name,
            estimate=self.price.estimate,
            messages=tuple(messages),
            **fields,
        )

    def estimate_cost(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None,
        max_tokens: int,
    ) -> float:
        """An upper estimate of one call's cost (prompt estimate + ``max_tokens`` out)."""
        return self.price.cost(estimate_tokens(messages, tools), max_tokens)

    def check_budget(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None,
        max_tokens: int,
    ) -> None:
        """Refuse a call whose estimate would take the payer past its budget.

        Raises:
            BudgetExceeded: with the budget, what was spent and the estimate.
        """
        limits = [b for b in (self.budget_usd, self.meter.max_cost_usd) if b is not None]
        if not limits and self.daily is None:
            return
        estimate = self.estimate_cost(messages, tools, max_tokens)
        self._check_daily(estimate)
        if not limits:
            return
        budget = min(limits)
        spent = self.meter.spent_usd
        if spent + estimate > budget:
            raise BudgetExceeded(
                f"the next model call (~${estimate:.4f}) would take the run past its budget "
                f"of ${budget:.4f} (spent ${spent:.4f})",
                budget_usd=budget,
                spent_usd=spent,
                next_usd=estimate,
            )

    def _check_daily(self, estimate: float) -> None:
        """Refuse a call that would take the workflow's spend today past its daily budget."""
        if self.daily is None:
            return
        today = self.daily.spent_today()
        if today is None:
            return
        if today + estimate > self.daily.limit_usd:
            raise BudgetExceeded(
                f"the next model call (~${estimate:.4f}) would take workflow "
                f"`{self.meter.workflow}` past its daily budget of "
                f"${self.daily.limit_usd:.4f} (spent ${today:.4f} today)",
                budget_usd=self.daily.limit_usd,
                spent_usd=today,
                next_usd=estimate,
            )
