"""`RunMeter`: what the model router charges a run's model calls to.

The router knows nothing of gateways (it takes any `ModelMeter`); this is the gateway's:
the budget is the run's cost cap from the policy, the retries are what is left of its
retry cap, and each call is recorded as the run's ``model_call`` event.
"""

from __future__ import annotations

from typing import Protocol

from opsgate.gateway._run import Run
from opsgate.models import ModelCall
from opsgate.policy import CompiledPolicy

__all__ = ["RunMeter"]


class _Payee(Protocol):
    """What the meter needs of the gateway (which imports this module)."""

    @property
    def policy(self) -> CompiledPolicy: ...

    def charge(self, run: Run, call: ModelCall) -> None: ...


class RunMeter:
    """``run``'s model spend, as `ModelMeter` asks for it."""

    __slots__ = ("_caps", "_gateway", "_run")

    def __init__(self, gateway: _Payee, run: Run) -> None:
        self._gateway = gateway
        self._run = run
        self._caps = gateway.policy.caps(run.workflow, run.agent_id)  # a meter is per call

    @property
    def workflow(self) -> str:
        """The run's workflow."""
        return self._run.workflow

    @property
    def purpose(self) -> str:
        """The run's purpose (``production`` or ``eval``)."""
        return self._run.purpose

    @property
    def spent_usd(self) -> float:
        """The run's spend so far."""
        return self._run.cost_usd

    @property
    def max_cost_usd(self) -> float | None:
        """The run's cost cap from the policy."""
        return self._caps.max_cost_usd

    def retry_budget(self) -> int | None:
        """What is left of the run's retry cap (None: no cap)."""
        limit = self._caps.max_retries
        return None if limit is None else max(0, limit - self._run.retries)

    def record(self, call: ModelCall) -> None:
        """Add the call to the run and record its ``model_call`` event."""
        self._gateway.charge(self._run, call)
