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

A lone call commits on its own thread: when `settle` finds no commit in flight, nothing
queued but its own run's events, and the last commit shared by nobody, it writes them
itself instead of waking the writer and being woken back (two thread hops and their GIL
hand-offs, most of a sequential write-ahead call's cost). That blocks the caller's event
loop for one commit (~0.2 ms on a local disk), so when these commits take longer than
``inline_max_s`` (10 ms, smoothed over the last few) it is turned off for a second.
Commits stay serialised in queue order (whoever takes events from the queue commits them
before anyone takes more); concurrent calls still go through the writer and share its
commits. A checkpoint falling due on such a commit is left to the writer: signing one reads
and hashes every event since the last (5-10 ms a thousand events), which would stall the
event loop; the writer does it while calls go on (`AuditLog.checkpoint` holds the log's
write lock only to insert the signed head).

Followers (`opsgate.recorder.BatchRecorder`: the traces, the cost ledger) get each batch
from the writer thread once it is written, before its waiters are woken: one hand-off per
batch, in the trail's order, instead of one queue put (and one wake-up of their threads) per
event on the gateway's hot path. They get every event this recorder accepted, even those of
a batch whose commit failed (the calls may have run; what failed is the trail's record).

A failed commit marks the runs whose events it held: their trails have a hole, so any
later `record` or `settle` of those runs raises (and nothing more of theirs is queued),
while other runs go on once the database is back. `flush` (and `close`) raises when a
commit that nobody waited for failed since the last flush, so a caller learns that the
record is incomplete.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from opsgate.audit._log import AuditLog
from opsgate.errors import StoreError
from opsgate.recorder import BatchRecorder, Event, EventType

__all__ = ["AuditRecorder"]

_MAX_BATCH = 1000
_POLL_AFTER_INLINE_S = 0.1  # the writer polls this long after a lone settle's commit
_INLINE_PAUSE_S = 1.0  # once lone commits are slow, the writer commits everything this long
_INLINE_WEIGHT = 0.2  # the weight of the newest lone commit in their smoothed time
_FAILED_RUNS_KEPT = 10_000  # runs with a hole remembered (the oldest are forgotten first)


#: Events a write-ahead recorder commits before `record` returns: the end of a run (its
#: outcome is kept before the caller hears it) and a write the world now carries.
_BARRIERS = frozenset({EventType.RUN_ENDED, EventType.ESCALATED, EventType.WRITE_PERFORMED})


@dataclass(slots=True)
class _Pending:
    event: Event | None  # None: a flush marker
    done: threading.Event | None = None  # set once committed (for a thread waiting on it)
    error: BaseException | None = None
    notify: Callable[[BaseException | None], None] | None = None
    waited: bool = False  # a caller waits for this event's commit (and hears a failure)
    at: float = field(default_factory=time.monotonic)  # when it was queued (the linger's start)


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
        linger_s: Events nobody waits for yet (write-ahead or not durable) wait up to
            this long after they were queued for a waiter (a `settle`, a barrier event, a
            `flush`), and are committed as soon as one comes: a call's result then shares
            the commit the next call's `settle` waits for (one fsync a call, not two).
            Nothing waited for is delayed; what nobody waits for is written at most this
            much later (``poll_s`` more while lone calls commit themselves; 0 disables).
        followers: Recorders that get every batch once it is written (see above); their
            failures are counted in `follower_failures`, never raised.
        inline_max_s: A lone `settle` commits on its own thread (see above) while such
            commits take at most this long (smoothed); slower, it hands commits back to the
            writer for a second (0: never commit on the caller's thread).
        poll_s: While lone calls commit their own events, the writer is not woken by an
            event nobody waits for (a call's result, which the next call's `settle` usually
            takes along): it looks every ``poll_s`` instead, so such an event is written at
            most ``poll_s + linger_s`` later when no call follows. Each look takes the GIL
            from the calls (looking every 2 ms cost the stdio proxy ~0.1 ms of CPU a call).
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
        followers: Sequence[BatchRecorder] = (),
        inline_max_s: float = 0.01,
        poll_s: float = 0.02,
    ) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be > 0")
        self.log = log
        self.durable = durable
        self.checkpoint_every = checkpoint_every
        self.checkpoint_on_run_end = checkpoint_on_run_end and log.signer is not None
        self._pending: deque[_Pending] = deque()
        self._waiters = 0  # items in `_pending` someone waits for (flush markers, waited events)
        self._cond = threading.Condition(threading.Lock())  # guards the above and `_stop`
        self._commit_lock = threading.Lock()  # held from taking events off `_pending` to commit
        self._stop = False
        self._polling = False  # the writer looks every poll_s instead of being woken
        self._inline_at = -1e9  # when a lone settle last committed (monotonic)
        self._slow_until = -1e9  # no lone commits before then: they were slow
        self._inline_s = 0.0  # a lone commit's time, smoothed
        self._since_checkpoint = 0
        self._checkpoint_due = False  # a lone settle's commit left the checkpoint to the writer
        self._concurrent = False
        self.commit_delay_s = commit_delay_s
        self.linger_s = 0.0 if durable is True else linger_s
        self.inline_max_s = inline_max_s
        self.poll_s = poll_s
        self._closed = False
        self._failure: BaseException | None = None  # the last failed commit (since a flush)
        self._failed_runs: dict[str, BaseException] = {}
        self.batches = 0
        self.inline_batches = 0
        """Commits made by a lone `settle` on its own thread."""
        self.delayed = 0
        """Commits that waited `commit_delay_s` for more writers."""
        self.events = 0
        self.checkpoint_failures = 0
        self.last_checkpoint_error = ""
        self.followers = tuple(followers)
        self.follower_failures = 0
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
        done = threading.Event() if waits else None  # nobody waits: no Event to build
        pending = _Pending(event, done, waited=waits)
        self._put(pending)
        if done is not None:
            done.wait()
            if pending.error is not None:
                raise pending.error
            self._refuse_failed(event.run_id)  # an earlier event of this run was lost

    def _put(self, pending: _Pending) -> None:
        waited = pending.waited or pending.event is None
        with self._cond:
            idle = not self._pending
            self._pending.append(pending)
            if waited:
                self._waiters += 1
            # wake the writer when it has nothing (it sleeps) or when someone now waits (it
            # may be lingering); an event nobody waits for joins the linger already running,
            # or the writer's next look while lone calls commit themselves (`_run`)
            if waited or (idle and not self._polling):
                self._cond.notify()

    def _refuse_failed(self, run_id: str | None) -> None:
        failed = None if run_id is None else self._failed_runs.get(run_id)
        if failed is not None:
            # an earlier, unwaited batch of this run failed: its trail has a hole
            raise StoreError(f"an earlier audit write of run `{run_id}` failed: {failed}")

    async def settle(self, run_id: str | None = None) -> None:
        """Wait until everything recorded so far is committed. The gateway calls it before
        a tool runs (write-ahead). A lone call commits its own events here, on the event
        loop's thread (see the module's docstring); otherwise the loop is not blocked.

        Raises:
            StoreError: a write of ``run_id`` failed, or the commit this waited for did
                (the tool must not run).
        """
        if self.durable is True:
            return  # every record() already waited
        if self._closed:
            raise StoreError("the audit recorder is closed")
        if run_id is not None and self._settle_inline(run_id):
            self._refuse_failed(run_id)
            return
        loop = asyncio.get_running_loop()
        settled: asyncio.Future[None] = loop.create_future()

        def notify(error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(_resolve, settled, error)

        self._put(_Pending(None, notify=notify))
        await settled
        self._refuse_failed(run_id)

    def _settle_inline(self, run_id: str) -> bool:
        """Commit what is queued here when this call is alone (True: done, committed);
        False leaves it to the writer.

        Raises:
            StoreError: the commit failed (the tool must not run).
        """
        if (
            not self.inline_max_s
            or self._concurrent
            or time.monotonic() < self._slow_until
            or not self._commit_lock.acquire(blocking=False)
        ):
            return False
        try:
            with self._cond:
                pending = self._pending
                if (
                    self._waiters
                    or len(pending) > _MAX_BATCH
                    or any(p.event is None or p.event.run_id != run_id for p in pending)
                ):
                    return False  # others are writing: share the writer's commit
                batch = list(pending)
                pending.clear()
            started = self._inline_at = time.monotonic()
            if batch:
                self.inline_batches += 1
                error = self._commit(batch, inline=True)
                took = time.monotonic() - started
                self._inline_s += (took - self._inline_s) * _INLINE_WEIGHT
                if self._inline_s > self.inline_max_s:
                    # a slow database (a remote server, a busy disk), not one slow commit:
                    # the event loop must not wait for it; leave commits to the writer
                    self._slow_until = time.monotonic() + _INLINE_PAUSE_S
                    self._inline_s = 0.0
                if error is not None:
                    raise error
            return True
        finally:
            self._commit_lock.release()

    def flush(self) -> None:
        """Wait until everything recorded so far is committed.

        Raises:
            StoreError: a commit nobody waited for failed since the last flush (the record
                is incomplete).
        """
        done = threading.Event()
        self._put(_Pending(None, done))
        done.wait()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise StoreError(f"an audit write failed: {failure}")

    def close(self) -> None:
        """Flush, sign a final checkpoint and stop the writer."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()
        if self.log.signer is not None:
            self.log.checkpoint()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._pending:
                        if self._stop:
                            return
                        if self._checkpoint_due:
                            break
                        # while lone calls commit their own events, look every poll_s
                        # rather than be woken by each call's result (one thread hop less
                        # a call); idle, sleep until woken
                        self._polling = bool(self.linger_s) and (
                            time.monotonic() - self._inline_at < _POLL_AFTER_INLINE_S
                        )
                        self._cond.wait(self.poll_s if self._polling else None)
                        continue
                    if self.linger_s and not self._waiters and not self._stop:
                        # nobody waits yet: give a waiter (the next call's settle) the
                        # chance to take these along, or to commit them itself
                        left = self._pending[0].at + self.linger_s - time.monotonic()
                        if left > 0:
                            self._cond.wait(left)
                            continue
                    break
                self._polling = False
            if self._checkpoint_due:
                self._checkpoint_due = False
                self._checkpoint()
                continue  # then wait for the next batch as usual (a lone call may take it)
            if self._concurrent:
                # others were writing a moment ago: give them a breath to join this commit
                # (as PostgreSQL's commit_delay does); a lone writer never waits
                time.sleep(self.commit_delay_s)
                self.delayed += 1
            with self._commit_lock:
                with self._cond:
                    batch: list[_Pending] = []
                    while self._pending and len(batch) < _MAX_BATCH:
                        batch.append(self._pending.popleft())
                if batch:
                    self._commit(batch)

    def _commit(self, batch: list[_Pending], *, inline: bool = False) -> BaseException | None:
        """Write ``batch`` (the commit lock held), hand it to the followers, wake its
        waiters, checkpoint when due (``inline``, on a caller's thread: leave it to the
        writer); returns the commit's error, if any."""
        waiters = sum(1 for p in batch if p.waited or p.event is None)
        if waiters:
            with self._cond:
                self._waiters -= waiters
        events = [p.event for p in batch if p.event is not None]
        # several callers waited on this commit (not merely several events: one call's
        # result riding with its next call's decision is still one writer)
        self._concurrent = waiters > 1
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
        if events:
            self._hand_over(events)
        for pending in batch:
            pending.error = error if pending.event is not None else None
            if pending.done is not None:
                pending.done.set()
            if pending.notify is not None:
                pending.notify(error)
        if (
            error is None
            and self.log.signer is not None
            and (
                (self.checkpoint_on_run_end and any(e.type == EventType.RUN_ENDED for e in events))
                or (self.checkpoint_every and self._since_checkpoint >= self.checkpoint_every)
            )
        ):
            self._since_checkpoint = 0  # due once: later commits do not ask again
            if inline:
                with self._cond:
                    self._checkpoint_due = True
                    self._cond.notify()
            else:
                self._checkpoint()
        return error

    def _checkpoint(self) -> None:
        """Sign a checkpoint (on the writer's thread); a failure is counted, not raised."""
        try:
            self.log.checkpoint()
        except Exception as exc:  # the events are safe; the next checkpoint covers them
            self.checkpoint_failures += 1
            self.last_checkpoint_error = f"{type(exc).__name__}: {exc}"

    def _hand_over(self, events: list[Event]) -> None:
        """Give the batch to each follower (before its waiters return: a flush covers them)."""
        for follower in self.followers:
            try:
                follower.record_batch(events)
            except Exception:  # a follower must not fail the trail (they never raise anyway)
                self.follower_failures += 1


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
