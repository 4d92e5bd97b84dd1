"""`RunMeter`: what the model router charges a run's model calls to.

The router knows nothing of gateways (it takes any `ModelMeter`); this is the gateway's:
the budget is the run's cost cap from the policy, the retries are what is left of its
retry cap, and each call is recorded as the run's ``model_call`` event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opsgate.models import ModelCall

if TYPE_CHECKING:
    from opsgate.gateway._gateway import Gateway
    from opsgate.gateway._run import Run

__all__ = ["RunMeter"]


class RunMeter:
    """``run``'s model spend, as `ModelMeter` asks for it."""

    __slots__ = ("_gateway", "_run")

    def __init__(self, gateway: Gateway, run: Run) -> None:
        self._gateway = gateway
        self._run = run

    @property
    def workflow(self) -> str:
        """The run's workflow."""
        return self._run.workflow

    @property
    def spent_usd(self) -> float:
        """The run's spend so far."""
        return self._run.cost_usd

    @property
    def max_cost_usd(self) -> float | None:
        """The run's cost cap from the policy."""
        return self._gateway.policy.caps(self._run.workflow, self._run.agent_id).max_cost_usd

    def retry_budget(self) -> int | None:
        """What is left of the run's retry cap (None: no cap)."""
        limit = self._gateway.policy.caps(self._run.workflow, self._run.agent_id).max_retries
        return None if limit is None else max(0, limit - self._run.retries)

    def record(self, call: ModelCall) -> None:
        """Add the call to the run and record its ``model_call`` event."""
        self._gateway.record_model_call(
            self._run,
            role=call.role,
            model=call.model,
            provider=call.provider,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cached_input_tokens=call.cached_input_tokens,
            cost_usd=call.cost_usd,
            latency_s=call.latency_s,
            estimate=call.estimate,
            attempts=call.attempts,
            cache_hit=call.cache_hit,
            error_type=call.error_type,
            request_model=call.request_model,
            response_model=call.response_model,
            finish_reason=call.finish_reason,
            messages=call.messages,
            response=call.response,
        )
