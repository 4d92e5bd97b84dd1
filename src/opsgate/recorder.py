"""The events a run leaves behind, and the `Recorder` interface the gateway hands them to.

The gateway never writes a log itself: it builds an `Event` for each thing that happens
and gives it to its recorder. The durable, hash-chained audit trail and the trace
exporter are recorders; `InMemoryRecorder` keeps events in a list (tests, the demo).

Event payloads are JSON data with secrets already removed by the gateway.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

__all__ = [
    "BatchRecorder",
    "Event",
    "EventType",
    "FanOutRecorder",
    "InMemoryRecorder",
    "Recorder",
]


class EventType(StrEnum):
    """What happened. Stable names: the audit trail and the dashboard key on them."""

    RUN_STARTED = "run_started"
    CONTEXT_READ = "context_read"
    TOOL_CALL_PROPOSED = "tool_call_proposed"
    DECISION = "decision"
    SHADOW_DECISION = "shadow_decision"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_GRANTED = "approval_granted"
    APPROVAL_DENIED = "approval_denied"
    TOOL_RETRY = "tool_retry"
    TOOL_RESULT = "tool_result"
    TOOL_ERROR = "tool_error"
    WRITE_PERFORMED = "write_performed"
    STEP = "step"
    MODEL_CALL = "model_call"
    PLAN = "plan"
    PLAN_COMMITTED = "plan_committed"
    RUN_RESUMED = "run_resumed"
    ESCALATED = "escalated"
    RUN_ENDED = "run_ended"
    STAGE_CHANGED = "stage_changed"
    # the console's administration, each an event of its own (run id ``token-…``/``budget-…``)
    TOKEN_CREATED = "token_created"
    TOKEN_REVOKED = "token_revoked"
    BUDGET_SET = "budget_set"
    BUDGET_CLEARED = "budget_cleared"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened in a run.

    Attributes:
        type: What happened.
        run_id: The run it happened in.
        seq: Its position in the run, from 0, without gaps.
        at: Wall-clock time (seconds since the epoch).
        data: JSON data, secrets removed.
        debug: Content only debug traces keep (a model call's prompt and answer), made on
            demand (`debug_content`): building it costs more than the call's accounting, and
            most recorders never read it; never written to the audit trail or the ledger.
    """

    type: EventType
    run_id: str
    seq: int
    at: float
    data: dict[str, Any]
    debug: Callable[[], dict[str, Any]] | None = None

    def debug_content(self) -> dict[str, Any] | None:
        """The debug content (GenAI messages, secrets removed), made now; None without."""
        return None if self.debug is None else self.debug()


class Recorder(Protocol):
    """Takes the gateway's events. It must not lose one: raise rather than drop."""

    def record(self, event: Event) -> None:
        """Keep ``event``; raising makes the gateway refuse to go on with the call."""

    async def settle(self, run_id: str | None = None) -> None:
        """Return once the events of ``run_id`` (None: all) recorded so far are kept.

        The gateway awaits it before any tool of that run runs, so nothing happens that is
        not yet recorded. A recorder that keeps events as it takes them returns at once.

        Raises:
            AuditError: an event of the run was lost (the call must not go on).
        """


class BatchRecorder(Protocol):
    """Takes events another recorder has already taken, a batch at a time (the audit
    recorder's followers: `opsgate.audit.AuditRecorder`). One hand-off per batch rather than
    one per event: fewer thread wake-ups and GIL hand-offs on the gateway's hot path."""

    def record_batch(self, events: Sequence[Event]) -> None:
        """Take ``events`` (in order). Never raises and never waits: a follower is not the
        record of truth (traces, the cost ledger); it counts what it could not keep."""


class InMemoryRecorder:
    """Keeps events in memory, in order. Thread-safe.

    Args:
        max_events: Keep only the newest this many (a long-lived process, a benchmark);
            ``None`` keeps every event (tests, the demo). `dropped` counts what was let go.
    """

    def __init__(self, max_events: int | None = None) -> None:
        if max_events is not None and max_events < 1:
            raise ValueError("max_events must be at least 1")
        self._events: deque[Event] = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self.dropped = 0

    def record(self, event: Event) -> None:
        """Append ``event`` (the oldest goes when the bound is reached)."""
        with self._lock:
            if self._events.maxlen is not None and len(self._events) == self._events.maxlen:
                self.dropped += 1
            self._events.append(event)

    async def settle(self, run_id: str | None = None) -> None:
        """Nothing to wait for: an event is kept once `record` returns."""

    def clear(self) -> None:
        """Forget every event kept so far."""
        with self._lock:
            self._events.clear()

    @property
    def events(self) -> list[Event]:
        """A copy of every event kept."""
        with self._lock:
            return list(self._events)

    def of_run(self, run_id: str) -> list[Event]:
        """The events of one run."""
        return [e for e in self.events if e.run_id == run_id]

    def of_type(self, kind: EventType | str) -> list[Event]:
        """The events of one type."""
        return [e for e in self.events if e.type == kind]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self._events)


class FanOutRecorder:
    """Hands each event to several recorders, in order.

    Put the audit recorder first: it may refuse an event (and then the gateway refuses
    the call), and the recorders after it never see an event the audit trail lacks.
    Trace recorders after it never raise.
    """

    def __init__(self, *recorders: Recorder) -> None:
        if not recorders:
            raise ValueError("a fan-out needs at least one recorder")
        self._recorders = recorders

    def record(self, event: Event) -> None:
        """Give ``event`` to every recorder, stopping at the first that raises."""
        for recorder in self._recorders:
            recorder.record(event)

    async def settle(self, run_id: str | None = None) -> None:
        """Await `settle` of every recorder, in order (write-ahead durability)."""
        for recorder in self._recorders:
            await recorder.settle(run_id)
