"""`AuditRecorder`: the gateway's `Recorder` that writes the audit trail, group-committed.

``record()`` hands the event to one writer thread and (durable mode, the default) waits
until the transaction holding it has committed. In write-ahead mode (``durable=
"write_ahead"``, for async agents and eval runs) it waits only for the events that end a
run or report a write; the gateway awaits `settle` before any tool runs, so nothing happens
that the trail does not already hold, while concurrent runs share commits instead of
blocking the event loop once per event. While one transaction is being flushed,
events from other threads queue up; the next transaction takes them all, so one durable
commit (one fsync) covers every event that arrived meanwhile: group commit. Events nobody
waits for linger briefly for a waiter: a call's result rides with the commit the next
call's ``settle`` waits for, rather than taking a commit of its own that the ``settle``
may then find in flight and wait out too. A failed
commit raises in every waiting caller, so the gateway never runs a call whose record
was not kept.

A failed commit marks the runs whose events it held: their trails have a hole, so any
later `record` or `settle` of those runs raises (and nothing more of theirs is queued),
while other runs go on once the database is back. `flush` (and `close`) raises when a
commit that nobody waited for failed since the last flush, so a caller learns that the
record is incomplete.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from opsgate.audit._log import AuditLog
from opsgate.errors import StoreError
from opsgate.recorder import Event, EventType

__all__ = ["AuditRecorder"]

_MAX_BATCH = 1000
_FAILED_RUNS_KEPT = 10_000  # runs with a hole remembered (the oldest are forgotten first)


#: Events a write-ahead recorder commits before `record` returns: the end of a run (its
#: outcome is kept before the caller hears it) and a write the world now carries.
_BARRIERS = frozenset({EventType.RUN_ENDED, EventType.ESCALATED, EventType.WRITE_PERFORMED})


@dataclass(slots=True)
class _Pending:
    event: Event | None  # None: a flush marker
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    notify: Callable[[BaseException | None], None] | None = None
    waited: bool = False  # a caller waits for this event's commit (and hears a failure)


class AuditRecorder:
    """Writes every event to an `AuditLog`.

    Args:
        log: The audit log (with a signer, to checkpoint).
        durable: Wait for the commit in ``record()`` (True, the default). ``"write_ahead"``
            waits only for run ends and writes, and relies on the gateway awaiting `settle`
            before a tool runs. False returns at once and lets `flush` or `close` wait; a
            crash may then lose the last batch.
        checkpoint_every: Sign a checkpoint after this many events (0: never by count).
        checkpoint_on_run_end: Sign a checkpoint when a run ends.
        commit_delay_s: When the last commit was waited for by several callers (settles,
            durable records, flushes), wait this long before the next one so that more join
            it (0 disables); a lone writer never waits.
        linger_s: A batch nobody waits for yet (write-ahead or not durable) waits up to
            this long for a waiter (a `settle`, a barrier event, a `flush`), and is
            committed as soon as one comes: a call's result then shares the commit the
            next call's `settle` waits for (one fsync a call, not two). Nothing waited
            for is delayed; what nobody waits for is written at most this much later
            (0 disables).
    """

    def __init__(
        self,
        log: AuditLog,
        *,
        durable: bool | Literal["write_ahead"] = True,
        checkpoint_every: int = 1000,
        checkpoint_on_run_end: bool = True,
        commit_delay_s: float = 0.0002,
        linger_s: float = 0.002,
    ) -> None:
        self.log = log
        self.durable = durable
        self.checkpoint_every = checkpoint_every
        self.checkpoint_on_run_end = checkpoint_on_run_end and log.signer is not None
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._since_checkpoint = 0
        self._concurrent = False
        self.commit_delay_s = commit_delay_s
        self.linger_s = 0.0 if durable is True else linger_s
        self._closed = False
        self._failure: BaseException | None = None  # the last failed commit (since a flush)
        self._failed_runs: dict[str, BaseException] = {}
        self.batches = 0
        self.delayed = 0
        """Commits that waited `commit_delay_s` for more writers."""
        self.events = 0
        self.checkpoint_failures = 0
        self.last_checkpoint_error = ""
        self._thread = threading.Thread(target=self._run, name="opsgate-audit", daemon=True)
        self._thread.start()

    def record(self, event: Event) -> None:
        """Append ``event``; in durable mode, return only once it is committed.

        Raises:
            StoreError: the event could not be stored (the caller must not go on).
        """
        if self._closed:
            raise StoreError("the audit recorder is closed")
        self._refuse_failed(event.run_id)  # before queueing: a refused event is never written
        waits = self.durable is True or (self.durable == "write_ahead" and event.type in _BARRIERS)
        pending = _Pending(event, waited=waits)
        self._queue.put(pending)
        if waits:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            self._refuse_failed(event.run_id)  # an earlier event of this run was lost

    def _refuse_failed(self, run_id: str | None) -> None:
        failed = None if run_id is None else self._failed_runs.get(run_id)
        if failed is not None:
            # an earlier, unwaited batch of this run failed: its trail has a hole
            raise StoreError(f"an earlier audit write of run `{run_id}` failed: {failed}")

    async def settle(self, run_id: str | None = None) -> None:
        """Wait, without blocking the event loop, until everything recorded so far is
        committed. The gateway calls it before a tool runs (write-ahead).

        Raises:
            StoreError: a write of ``run_id`` failed, or the commit this waited for did
                (the tool must not run).
        """
        if self.durable is True:
            return  # every record() already waited
        if self._closed:
            raise StoreError("the audit recorder is closed")
        loop = asyncio.get_running_loop()
        settled: asyncio.Future[None] = loop.create_future()

        def notify(error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(_resolve, settled, error)

        self._queue.put(_Pending(None, notify=notify))
        await settled
        self._refuse_failed(run_id)

    def flush(self) -> None:
        """Wait until everything recorded so far is committed.

        Raises:
            StoreError: a commit nobody waited for failed since the last flush (the record
                is incomplete).
        """
        marker = _Pending(None)
        self._queue.put(marker)
        marker.done.wait()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise StoreError(f"an audit write failed: {failure}")

    def close(self) -> None:
        """Flush, sign a final checkpoint and stop the writer."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        if self.log.signer is not None:
            self.log.checkpoint()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            if self._concurrent:
                # others were writing a moment ago: give them a breath to join this commit
                # (as PostgreSQL's commit_delay does); a lone writer never waits
                time.sleep(self.commit_delay_s)
                self.delayed += 1
            self._take(batch, 0.0)
            if self.linger_s and not any(p.waited or p.event is None for p in batch):
                self._take(batch, self.linger_s)
            events = [p.event for p in batch if p.event is not None]
            # several callers waited on this commit (not merely several events: one call's
            # result riding with its next call's decision is still one writer)
            self._concurrent = sum(1 for p in batch if p.waited or p.event is None) > 1
            error: BaseException | None = None
            try:
                self.log.append(events)
                self.batches += 1
                self.events += len(events)
                self._since_checkpoint += len(events)
            except BaseException as exc:  # handed to every waiting caller
                error = (
                    exc
                    if isinstance(exc, StoreError)
                    else StoreError(f"audit write failed: {type(exc).__name__}: {exc}")
                )
                if any(p.event is not None and not p.waited for p in batch):
                    self._failure = error  # nobody heard of it: `flush` will say so
                for event in events:
                    self._failed_runs[event.run_id] = error
                while len(self._failed_runs) > _FAILED_RUNS_KEPT:
                    self._failed_runs.pop(next(iter(self._failed_runs)))
            for pending in batch:
                pending.error = error if pending.event is not None else None
                pending.done.set()
                if pending.notify is not None:
                    pending.notify(error)
            if (
                error is None
                and self.log.signer is not None
                and (
                    (
                        self.checkpoint_on_run_end
                        and any(e.type == EventType.RUN_ENDED for e in events)
                    )
                    or (self.checkpoint_every and self._since_checkpoint >= self.checkpoint_every)
                )
            ):
                try:
                    self.log.checkpoint()
                    self._since_checkpoint = 0
                except Exception as exc:  # the events are safe; the next checkpoint covers them
                    self.checkpoint_failures += 1
                    self.last_checkpoint_error = f"{type(exc).__name__}: {exc}"

    def _take(self, batch: list[_Pending], linger_s: float) -> None:
        """Add what is queued to ``batch``; with ``linger_s``, wait up to that long for
        more until an item someone waits for arrives (then take what is queued too)."""
        deadline = time.monotonic() + linger_s
        while len(batch) < _MAX_BATCH:
            wait = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._queue.put(None)
                return
            batch.append(item)
            if item.waited or item.event is None:
                deadline = 0.0  # someone waits: commit now, with whatever else is queued


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
