"""`ScriptedToolExecutor`: a `ToolExecutor` that runs no tool, the shipped test double.

The gateway decides and records exactly as it does in production; only the doing is
scripted. Use it to test a policy, an agent or an eval against a workflow without touching
the systems its tools would change, and to drive failures (a timeout, a transient error,
an exception, a result that is not JSON data) on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opsgate.gateway._executor import Execution, RetryGate, ToolRequest, attempt

__all__ = ["ScriptedToolExecutor"]

Answer = Any | BaseException | Callable[[ToolRequest], Any]


class ScriptedToolExecutor:
    """Answers each tool's calls from its script, in order.

    Args:
        script: Per tool, the answers of its successive attempts: a value (the result), an
            exception (raised by the tool: `TimeoutError` and `ToolTransientError` are
            transient, retried when the gateway allows), or a callable of the `ToolRequest`
            (called each time; it may raise). A tool's last answer repeats once the others
            are used up.

    Attributes:
        requests: Every attempt asked of it, in order.
    """

    def __init__(self, script: Mapping[str, Answer | Sequence[Answer]]) -> None:
        self._script: dict[str, list[Answer]] = {
            tool: list(a) if isinstance(a, list | tuple) else [a] for tool, a in script.items()
        }
        self.requests: list[ToolRequest] = []

    def _next(self, request: ToolRequest) -> Any:
        answers = self._script.get(request.contract.name)
        if not answers:
            raise LookupError(f"no scripted answer for `{request.contract.name}`")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer(request) if callable(answer) else answer

    async def execute(self, request: ToolRequest, retry: RetryGate) -> Execution:
        """The scripted answer, with the retry rules `LocalToolExecutor` applies."""

        async def once() -> Any:
            self.requests.append(request)
            return self._next(request)

        return await attempt(request, retry, once)

    def close(self) -> None:
        """Nothing to release."""
