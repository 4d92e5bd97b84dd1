"""Doing, apart from deciding: how an allowed call is carried out.

The gateway decides (contract, policy, approval, caps) and records; a `ToolExecutor` runs
the tool, as httpx's client hands requests to a transport. `LocalToolExecutor` is the one
opsgate ships: the tool's function in this process (coroutines on the loop, plain functions
on a bounded thread pool), the secrets and context injected, a timeout per attempt,
transient failures retried when the gateway's `RetryGate` allows, and the result checked to
be JSON data. `ScriptedToolExecutor` answers from a script instead (tests, dry runs).

An executor never raises for what a tool does: every outcome is an `Execution`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import orjson
from pydantic_core import to_jsonable_python

from opsgate.contracts import ToolContext, ToolContract
from opsgate.errors import ToolTransientError

__all__ = [
    "Execution",
    "LocalToolExecutor",
    "RetryGate",
    "ToolExecutor",
    "ToolRequest",
    "attempt",
    "describe_exception",
]


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """One allowed call, ready to run.

    Attributes:
        contract: The tool.
        args: The validated arguments (what the function receives, context aside).
        run_id: The run.
        workflow: Its workflow.
        call_id: The call's id (stable across retries: an idempotency key).
        deps: The run's dependencies, for the `ToolContext`.
        secrets: The secrets the contract declares, resolved by the gateway.
        timeout_s: Seconds each attempt may take.
    """

    contract: ToolContract
    args: dict[str, Any]
    run_id: str
    workflow: str
    call_id: str
    deps: Any = None
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout_s: float = 30.0

    def kwargs(self) -> dict[str, Any]:
        """The function's keyword arguments: the args, and the context if it takes one."""
        kwargs = dict(self.args)
        if self.contract.context_param is not None:
            kwargs[self.contract.context_param] = ToolContext(
                self.run_id, self.workflow, self.call_id, self.deps, dict(self.secrets)
            )
        return kwargs


@dataclass(frozen=True, slots=True)
class Execution:
    """What came of a request.

    Attributes:
        ok: The tool returned JSON data (``result``).
        result: What it returned.
        attempts: Attempts made.
        error_type: Why it failed: ``ToolTimeout``, the exception's type name, or
            ``UnserialisableResult``.
        error: The failure, as a sentence (it may quote the tool: it is not yet scrubbed).
        retries_refused: It failed transiently and the `RetryGate` allowed no more retries.
    """

    ok: bool
    result: Any = None
    attempts: int = 1
    error_type: str | None = None
    error: str | None = None
    retries_refused: bool = False


#: Asked before each retry with (attempt just failed, error type, error); True allows it.
#: The gateway's counts the retry against the run's cap and records it first.
RetryGate = Callable[[int, str, str], Awaitable[bool]]


@runtime_checkable
class ToolExecutor(Protocol):
    """Carries out allowed calls."""

    async def execute(self, request: ToolRequest, retry: RetryGate) -> Execution:
        """Run ``request`` (retrying transient failures while ``retry`` allows)."""
        ...

    def close(self) -> None:
        """Release what it holds (threads, connections); waits for nothing."""
        ...


def describe_exception(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception cannot even say that."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose message could not be made>"


def as_json_data(raw: Any) -> Any:
    """What a tool returned, as JSON data.

    Raises:
        TypeError: an iterator (it may never end), or data JSON cannot hold.
    """
    if isinstance(raw, Iterator):  # a generator, `map(...)`, `itertools.count()`
        raise TypeError("an iterator may never end; return a list")
    # a str or an int is JSON data only when orjson writes it: not with a lone surrogate,
    # not past 64 bits
    result = raw if raw is None or type(raw) in (str, int, bool) else to_jsonable_python(raw)
    orjson.dumps(result)
    return result


class LocalToolExecutor:
    """Runs tools in this process.

    Args:
        max_threads: Plain (not async) tool functions run on a pool of at most this many
            threads, so that a blocking tool never blocks the event loop.
    """

    def __init__(self, max_threads: int = 32) -> None:
        self._threads = ThreadPoolExecutor(max_threads, thread_name_prefix="opsgate-tool")

    async def execute(self, request: ToolRequest, retry: RetryGate) -> Execution:
        """Run the tool; a timeout or `ToolTransientError` is retried when ``retry``
        allows (never a write that timed out: it may have happened)."""
        kwargs = request.kwargs()
        return await attempt(
            request, retry, lambda: self._invoke(request.contract, kwargs, request.timeout_s)
        )

    async def _invoke(self, contract: ToolContract, kwargs: dict[str, Any], limit_s: float) -> Any:
        async with asyncio.timeout(limit_s):
            if contract.is_async:
                return await contract.fn(**kwargs)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, lambda: contract.fn(**kwargs))

    def close(self) -> None:
        """Release the tool threads (waits for none)."""
        self._threads.shutdown(wait=False, cancel_futures=True)


async def attempt(
    request: ToolRequest, retry: RetryGate, once: Callable[[], Awaitable[Any]]
) -> Execution:
    """Call ``once`` until it answers, fails for good, or ``retry`` allows no more; then
    check that the answer is JSON data. A timeout or `ToolTransientError` is transient (a
    write that timed out never is: it may have happened); anything else fails at once."""
    contract = request.contract
    attempts = 0
    while True:
        attempts += 1
        try:
            raw = await once()
            break
        except (TimeoutError, ToolTransientError) as exc:
            kind, text = _transient(contract.name, exc, request.timeout_s)
            if not isinstance(exc, ToolTransientError) and contract.scope == "write":
                return Execution(False, None, attempts, kind, text)
            if not await retry(attempts, kind, text):
                return Execution(False, None, attempts, kind, text, retries_refused=True)
        except Exception as exc:
            text = f"`{contract.name}` raised {type(exc).__name__}: {describe_exception(exc)}"
            return Execution(False, None, attempts, type(exc).__name__, text)
    try:
        return Execution(True, as_json_data(raw), attempts)
    except Exception as exc:
        text = f"`{contract.name}` returned a {type(raw).__name__} that is not JSON data ({exc})"
        return Execution(False, None, attempts, "UnserialisableResult", text)


def _transient(tool: str, exc: BaseException, timeout_s: float) -> tuple[str, str]:
    if isinstance(exc, TimeoutError):
        return "ToolTimeout", f"`{tool}` did not answer within {timeout_s:g}s"
    return type(exc).__name__, f"`{tool}` failed: {describe_exception(exc)}"
