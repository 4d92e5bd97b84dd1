"""`CostRecorder`: the gateway's `Recorder` that writes the cost ledger, off the hot path.

``record()`` only files the event on a queue (and only the kinds the ledger needs); one
writer thread turns them into ``cost_entries`` rows and inserts them in batches. Unlike the
audit recorder it never raises and never makes the gateway wait: the ledger is accounting,
not evidence, so a write that fails is counted (``failures``, ``last_error``) and logged,
and the run goes on. Put it after the audit recorder in a `FanOutRecorder`, or make it one
of the audit recorder's followers (`record_batch`: one hand-off per committed batch, as
`opsgate.wiring.store_recorders` does).

Rows: one per ``model_call`` event (kind ``model``) and one per ``tool_result`` /
``tool_error`` event (kind ``tool``: no tokens, no cost, latency 0 unless the event carries
one). The run's workflow comes from its ``run_started`` event; for a run that started
before this recorder did (a run resumed after an approval), from the ``runs`` or
``approvals`` table, else it is left empty.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from opsgate.recorder import Event, EventType
from opsgate.store import Store, approvals, cost_entries, runs

__all__ = ["CostRecorder"]

_log = logging.getLogger("opsgate.cost")

_WANTED = frozenset(
    {
        EventType.RUN_STARTED,
        EventType.RUN_ENDED,
        EventType.MODEL_CALL,
        EventType.TOOL_RESULT,
        EventType.TOOL_ERROR,
    }
)
_ENTRY_KINDS = frozenset({EventType.MODEL_CALL, EventType.TOOL_RESULT, EventType.TOOL_ERROR})

# Column widths of `cost_entries` (PostgreSQL refuses a longer value; SQLite would keep it).
_WIDTHS = {"run_id": 64, "workflow": 128, "role": 32, "model": 256, "tool": 128}


@dataclass(slots=True)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


class CostRecorder:
    """Writes a ``cost_entries`` row for every model call and tool call of every run.

    Args:
        store: The opsgate database (schema 0004 or later).
        max_batch: Most events written in one transaction.
        max_runs: Most open runs whose workflow is remembered (the oldest are forgotten
            first; a forgotten run's workflow is then looked up in the database).
        linger_s: After the first event of a batch, wait this long for more to join it
            (one commit, one fsync, for a burst); `flush` and `close` do not wait for it.

    Attributes:
        written: Rows inserted so far.
        failures: Events that could not be turned into a row or written (or arrived after
            `close`). They are lost to the ledger; the gateway was not stopped for them.
        last_error: The last failure, as one line ("" when none).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 500,
        max_runs: int = 100_000,
        linger_s: float = 0.05,
    ) -> None:
        if max_batch < 1 or max_runs < 1 or linger_s < 0:
            raise ValueError("max_batch and max_runs must be >= 1, linger_s >= 0")
        self.linger_s = linger_s
        self._engine: Engine = store.engine
        self.max_batch = max_batch
        self.max_runs = max_runs
        self._queue: queue.SimpleQueue[Event | list[Event] | _Flush | None] = queue.SimpleQueue()
        # run id -> (workflow, purpose); writer thread only
        self._workflows: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.written = 0
        self.failures = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="opsgate-cost", daemon=True)
        self._thread.start()

    # -- the gateway's side ----------------------------------------------------------------

    def record(self, event: Event) -> None:
        """File ``event`` for the writer if the ledger needs it. Never raises, never waits."""
        try:
            if event.type not in _WANTED:
                return
            if self._closed:
                self._fail(1, "the cost recorder is closed")
                return
            self._queue.put(event)
        except Exception as exc:  # a malformed event: count it, never stop the run
            self._fail(1, f"{type(exc).__name__}: {exc}")

    def record_batch(self, events: Sequence[Event]) -> None:
        """File the events the ledger needs in one hand-off. Never raises, never waits."""
        try:
            wanted = [e for e in events if e.type in _WANTED]
            if not wanted:
                return
            if self._closed:
                self._fail(len(wanted), "the cost recorder is closed")
                return
            self._queue.put(wanted)
        except Exception as exc:  # a malformed event: count it, never stop the run
            self._fail(1, f"{type(exc).__name__}: {exc}")

    async def settle(self, run_id: str | None = None) -> None:
        """Nothing to wait for: the ledger is written behind the run, never ahead of a tool
        (`flush` waits for it)."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event recorded so far is written (or counted as failed).

        Returns:
            False if ``timeout`` seconds passed first, else True.
        """
        if self._closed:  # the writer finishes what came before the close, then stops
            self._thread.join(timeout)
            return not self._thread.is_alive()
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued and stop the writer. Later events are counted as failures."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    def __enter__(self) -> CostRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread -----------------------------------------------------------------

    def _fail(self, count: int, message: str) -> None:
        with self._lock:
            self.failures += count
            self.last_error = message

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch: list[Event | _Flush] = []
            _add(batch, first)
            if self.linger_s and not isinstance(first, _Flush):
                # accounting, not evidence: let a burst gather into one commit (one fsync)
                time.sleep(self.linger_s)
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                _add(batch, item)
            try:
                self._write(batch)
            except Exception as exc:  # never let the writer die
                self._fail(1, f"cost writer: {type(exc).__name__}: {exc}")
            finally:
                for item in batch:
                    if isinstance(item, _Flush):
                        item.done.set()
        # release anyone flushing after close
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Flush):
                item.done.set()
            elif item is not None:
                lost = len(item) if isinstance(item, list) else 1
                self._fail(lost, "the cost recorder is closed")

    def _write(self, batch: list[Event | _Flush]) -> None:
        pending: list[tuple[Event, dict[str, Any]]] = []
        for item in batch:
            if isinstance(item, _Flush):
                continue
            try:
                self._track(item)
                if item.type in _ENTRY_KINDS:
                    pending.append((item, _row(item)))
            except Exception as exc:
                self._fail(1, f"unusable `{item.type}` event: {type(exc).__name__}: {exc}")
        if pending:
            unknown = {e.run_id for e, _ in pending if e.run_id not in self._workflows}
            if unknown:
                self._resolve(unknown)
            rows = []
            for event, row in pending:
                workflow, purpose = self._workflows.get(event.run_id, ("", "production"))
                row["workflow"] = workflow[: _WIDTHS["workflow"]]
                row["purpose"] = purpose
                rows.append(row)
            self._insert(rows)
        # forget ended runs once their last rows are written
        for item in batch:
            if isinstance(item, Event) and item.type == EventType.RUN_ENDED:
                self._workflows.pop(item.run_id, None)

    def _track(self, event: Event) -> None:
        if event.type == EventType.RUN_STARTED:
            workflow = event.data.get("workflow")
            purpose = "eval" if event.data.get("purpose") == "eval" else "production"
            self._remember(event.run_id, workflow if isinstance(workflow, str) else "", purpose)

    def _remember(self, run_id: str, workflow: str, purpose: str = "production") -> None:
        self._workflows[run_id] = (workflow, purpose)
        while len(self._workflows) > self.max_runs:  # forget the oldest
            self._workflows.pop(next(iter(self._workflows)))

    def _resolve(self, run_ids: Iterable[str]) -> None:
        """Find the workflow (and purpose) of runs this recorder did not see start."""
        wanted = sorted(run_ids)
        purposes: dict[str, str] = {}
        try:
            with self._engine.connect() as conn:
                found: dict[str, str] = {}
                for run_id, workflow, purpose in conn.execute(
                    select(runs.c.run_id, runs.c.workflow, runs.c.purpose).where(
                        runs.c.run_id.in_(wanted)
                    )
                ).all():
                    found[run_id], purposes[run_id] = workflow, purpose
                missing = [r for r in wanted if r not in found]
                if missing:
                    for run_id, workflow in conn.execute(
                        select(approvals.c.run_id, approvals.c.workflow).where(
                            approvals.c.run_id.in_(missing)
                        )
                    ).all():
                        found.setdefault(run_id, workflow)
        except Exception as exc:  # the rows still go in, with an empty workflow
            _log.warning("cost ledger: cannot look up workflows: %s", exc)
            return
        for run_id in wanted:  # not found: "" (and no second look-up)
            self._remember(run_id, str(found.get(run_id, "")), purposes.get(run_id, "production"))

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(cost_entries.insert(), rows)
            with self._lock:
                self.written += len(rows)
            return
        except Exception as exc:
            if len(rows) == 1:
                self._fail(1, f"cost ledger write failed: {type(exc).__name__}: {exc}")
                _log.warning("cost ledger: a row was not written: %s", exc)
                return
        # one bad row must not lose the others: try them one by one
        for row in rows:
            self._insert([row])


def _add(batch: list[Event | _Flush], item: Event | list[Event] | _Flush) -> None:
    if isinstance(item, list):
        batch.extend(item)
    else:
        batch.append(item)


def _text(value: Any, column: str) -> str | None:
    if value is None:
        return None
    return str(value)[: _WIDTHS[column]]


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a count")
    return int(value)


def _float(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _row(event: Event) -> dict[str, Any]:
    """The ``cost_entries`` row of one ``model_call`` / ``tool_result`` / ``tool_error``."""
    d = event.data
    base: dict[str, Any] = {
        "run_id": str(event.run_id)[: _WIDTHS["run_id"]],
        "at": float(event.at),
        "latency_s": max(0.0, _float(d.get("latency_s"))),
        "attempts": _int(d.get("attempts", 1)),
    }
    if event.type == EventType.MODEL_CALL:
        ok = d.get("ok")
        return base | {
            "kind": "model",
            "role": _text(d.get("role"), "role"),
            "model": _text(d.get("model"), "model"),
            "tool": None,
            "input_tokens": _int(d.get("input_tokens")),
            "output_tokens": _int(d.get("output_tokens")),
            "cached_input_tokens": _int(d.get("cached_input_tokens")),
            "cost_usd": _float(d.get("cost_usd")),
            "estimate": bool(d.get("estimate", False)),
            "cache_hit": bool(d.get("cache_hit", False)),
            "ok": bool(ok) if ok is not None else d.get("error_type") is None,
        }
    return base | {
        "kind": "tool",
        "role": None,
        "model": None,
        "tool": _text(d.get("tool"), "tool"),
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_input_tokens": 0,
        "cost_usd": 0.0,
        "estimate": False,
        "cache_hit": False,
        "ok": event.type == EventType.TOOL_RESULT,
    }
