"""Agent patterns: thin loops over the model router and the gateway."""

from opsgate.agent._loop import AgentResult, execute
from opsgate.agent._patterns import HumanInTheLoopAgent, Lane, PlannerExecutor, RouterToolAgent

__all__ = [
    "AgentResult",
    "HumanInTheLoopAgent",
    "Lane",
    "PlannerExecutor",
    "RouterToolAgent",
    "execute",
]
