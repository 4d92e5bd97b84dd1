"""Agent patterns: thin loops over the model router and the gateway."""

from opsgate.agent._lanes import (
    Step,
    grounded_tools,
    grounded_values,
    missing_from_request,
    request_values,
    run_steps,
)
from opsgate.agent._loop import AgentResult, execute
from opsgate.agent._patterns import HumanInTheLoopAgent, Lane, PlannerExecutor, RouterToolAgent

__all__ = [
    "AgentResult",
    "HumanInTheLoopAgent",
    "Lane",
    "PlannerExecutor",
    "RouterToolAgent",
    "Step",
    "execute",
    "grounded_tools",
    "grounded_values",
    "missing_from_request",
    "request_values",
    "run_steps",
]
