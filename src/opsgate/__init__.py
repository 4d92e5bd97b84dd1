"""opsgate: every action an LLM agent takes passes one gate, leaves one record, and is
judged by one harness."""

from opsgate.adapters import guard
from opsgate.contracts import Toolbelt, ToolContext, ToolContract, tool
from opsgate.errors import OpsgateError
from opsgate.gateway import Gateway, Run, RunStatus, ToolOutcome
from opsgate.policy import CompiledPolicy, Decision, Effect, Reason, load_policy
from opsgate.provenance import ContextItem

__version__ = "0.1.0"

__all__ = [
    "CompiledPolicy",
    "ContextItem",
    "Decision",
    "Effect",
    "Gateway",
    "OpsgateError",
    "Reason",
    "Run",
    "RunStatus",
    "ToolContext",
    "ToolContract",
    "ToolOutcome",
    "Toolbelt",
    "__version__",
    "guard",
    "load_policy",
    "tool",
]
