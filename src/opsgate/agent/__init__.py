"""Agent patterns: thin loops over the model router and the gateway."""

from opsgate.agent._lanes import (
    TRUSTED_NUMBERS,
    Step,
    grounded_tools,
    grounded_values,
    missing_from_request,
    request_values,
    run_steps,
)
from opsgate.agent._loop import AgentResult, execute
from opsgate.agent._patterns import (
    HumanInTheLoopAgent,
    Lane,
    PlannerExecutor,
    Question,
    RouterToolAgent,
    read_both_ways,
)
from opsgate.agent._screen import INSTRUCTION_MARKERS, Screen, screened_texts

__all__ = [
    "INSTRUCTION_MARKERS",
    "TRUSTED_NUMBERS",
    "AgentResult",
    "HumanInTheLoopAgent",
    "Lane",
    "PlannerExecutor",
    "Question",
    "RouterToolAgent",
    "Screen",
    "Step",
    "execute",
    "grounded_tools",
    "grounded_values",
    "missing_from_request",
    "read_both_ways",
    "request_values",
    "run_steps",
    "screened_texts",
]
