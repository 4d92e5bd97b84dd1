"""Human approval: the `Approver` interface and its in-process implementations.

The gateway asks an approver when policy says ``needs_approval`` and waits for the
answer (up to its approval timeout; expiry escalates the run). Every answer carries the
identity of who gave it. The durable, database-backed queue implements the same
interface.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from opsgate.policy import Decision

__all__ = [
    "ApprovalAnswer",
    "ApprovalRequest",
    "Approver",
    "CallbackApprover",
    "DenyAllApprover",
    "InMemoryApprovalQueue",
]


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What an approver is asked to approve: the exact call, why it needs a human, what
    the invoker asked for, and where each argument's value came from (so a person, or a
    program, can judge whether the call serves the request or an injected instruction)."""

    run_id: str
    call_id: str
    workflow: str
    invoker: str
    agent_id: str
    tool: str
    args: dict[str, Any]
    decision: Decision
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    requested_at: float = field(default_factory=time.time)
    run_state: dict[str, Any] | None = field(default=None, repr=False)
    """The run's snapshot, for approvers that persist requests (and resume elsewhere)."""
    request_text: str = ""
    """The invoker's request (trusted), as the run started."""
    origins: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per argument: ``{trust, source, sources, kind, where}`` (`opsgate.provenance.Origin`)."""


@dataclass(frozen=True, slots=True)
class ApprovalAnswer:
    """An approver's answer. ``approver`` is required: no anonymous approvals."""

    approved: bool
    approver: str
    reason: str = ""
    recorded: bool = False
    """True when whoever took the decision already wrote it to the audit trail."""

    def __post_init__(self) -> None:
        if not isinstance(self.approver, str) or not self.approver.strip():
            raise ValueError("an approval answer needs the approver's identity")


class Approver(Protocol):
    """Answers approval requests."""

    @property
    def persists(self) -> bool:
        """Whether requests outlive the process (the gateway then hands a snapshot of the
        run with each request, so that another process can resume it)."""
        ...

    async def request(self, request: ApprovalRequest) -> ApprovalAnswer:
        """Return the answer; may wait for a person."""
        ...

    def give_up(self, request_id: str) -> None:
        """The run stops waiting for ``request_id`` (it expired, or the approver failed):
        nobody may answer it late. Called from a worker thread.

        Raises:
            ApprovalTakenOver: another process claimed the request first.
        """
        ...


class DenyAllApprover:
    """The default: with no approver configured, nothing that needs approval runs."""

    persists = False

    def give_up(self, request_id: str) -> None:
        """Nothing is pending."""

    async def request(self, request: ApprovalRequest) -> ApprovalAnswer:
        """Deny, naming the reason."""
        return ApprovalAnswer(False, "opsgate:no-approver", "no approver is configured")


class CallbackApprover:
    """Asks a function (sync or async), e.g. an evaluation suite's scripted answers."""

    persists = False

    def give_up(self, request_id: str) -> None:
        """Nothing is kept: a late answer has nowhere to go."""

    def __init__(
        self, answer: Callable[[ApprovalRequest], ApprovalAnswer | Awaitable[ApprovalAnswer]]
    ) -> None:
        self._answer = answer

    async def request(self, request: ApprovalRequest) -> ApprovalAnswer:
        """Call the function and return its answer."""
        result = self._answer(request)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, ApprovalAnswer):
            raise TypeError(f"approver callback returned {type(result).__name__}, not an answer")
        return result


class InMemoryApprovalQueue:
    """A queue of pending requests that people answer from the same process.

    Example::

        queue = InMemoryApprovalQueue()
        gateway = Gateway(belt, policy, approver=queue)
        ...                      # a run waits on queue.request(...)
        queue.approve(queue.pending()[0].request_id, approver="alice", reason="ok")
    """

    persists = False

    def __init__(self) -> None:
        self._pending: dict[str, tuple[ApprovalRequest, asyncio.Future[ApprovalAnswer]]] = {}

    def give_up(self, request_id: str) -> None:
        """Drop the request: a person can no longer answer it."""
        self._pending.pop(request_id, None)

    async def request(self, request: ApprovalRequest) -> ApprovalAnswer:
        """Queue ``request`` and wait for a person's answer."""
        future: asyncio.Future[ApprovalAnswer] = asyncio.get_running_loop().create_future()
        self._pending[request.request_id] = (request, future)
        try:
            return await future
        finally:
            self._pending.pop(request.request_id, None)

    def pending(self) -> list[ApprovalRequest]:
        """Requests waiting for an answer, oldest first."""
        return [req for req, _ in self._pending.values()]

    def approve(self, request_id: str, *, approver: str, reason: str = "") -> None:
        """Approve a pending request."""
        self._answer(request_id, ApprovalAnswer(True, approver, reason))

    def deny(self, request_id: str, *, approver: str, reason: str = "") -> None:
        """Deny a pending request."""
        self._answer(request_id, ApprovalAnswer(False, approver, reason))

    def _answer(self, request_id: str, answer: ApprovalAnswer) -> None:
        try:
            _, future = self._pending[request_id]
        except KeyError:
            raise KeyError(f"no pending approval request `{request_id}`") from None
        if not future.done():
            future.get_loop().call_soon_threadsafe(_settle, future, answer)


def _settle(future: asyncio.Future[ApprovalAnswer], answer: ApprovalAnswer) -> None:
    if not future.done():
        future.set_result(answer)
