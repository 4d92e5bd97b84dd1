"""A lone write-ahead call commits on its own thread, and the audit recorder hands its
batches to its followers (the traces, the cost ledger): the decision is still durable
before the tool runs, commits stay in queue order, nothing is lost at close, and a failing
follower never fails nor delays a call."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.errors import StoreError
from opsgate.gateway import Gateway
from opsgate.policy import CompiledPolicy
from opsgate.recorder import Event, EventType, FanOutRecorder
from opsgate.store import Store, cost_entries, open_store
from opsgate.store import spans as spans_table
from opsgate.wiring import store_recorders
from tests.conftest import BELT


class Follower:
    """Keeps what it is handed, and on which thread."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[Event]] = []
        self.threads: set[str] = set()
        self.fail = fail

    def record_batch(self, events: Sequence[Event]) -> None:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(events))
        if self.fail:
            raise RuntimeError("a broken follower")

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]


def recorder_at(tmp_path: Path, **kwargs: Any) -> tuple[AuditRecorder, AuditLog, Store]:
    store = open_store(f"sqlite:///{tmp_path / 'inline.db'}")
    log = AuditLog(store, None)
    return AuditRecorder(log, durable="write_ahead", **kwargs), log, store


def spy_on(gateway: Gateway, tool: str, seen: Callable[[], None]) -> None:
    original = gateway.toolbelt[tool].fn

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen()
        return original(*args, **kwargs)

    object.__setattr__(gateway.toolbelt[tool], "fn", spy)


async def test_a_lone_call_commits_its_decision_itself_before_the_tool_runs(
    tmp_path: Path, make_policy: Callable[..., CompiledPolicy]
) -> None:
    recorder, log, store = recorder_at(tmp_path, linger_s=5.0, inline_max_s=60.0)
    committers: list[str] = []
    append = log.append

    def on_which_thread(events: Any) -> list[int]:
        committers.append(threading.current_thread().name)
        return append(events)

    log.append = on_which_thread  # type: ignore[method-assign]
    gateway = Gateway(BELT, make_policy(), recorder=recorder)
    run = gateway.start_run("wf", invoker="alice", agent_id="bot", request="r")
    decisions_kept: list[int] = []

    def count_decisions() -> None:  # read from the database, as another process would
        with store.engine.connect() as conn:
            decisions_kept.append(
                conn.execute(
                    text("SELECT count(*) FROM audit_events WHERE type = 'decision'")
                ).scalar_one()
            )

    spy_on(gateway, "lookup", count_decisions)
    for n in range(3):
        assert (await gateway.call(run, "lookup", {"order_id": f"ORD-{n}"})).ok
    assert decisions_kept == [1, 2, 3]  # each call's decision was durable before it ran
    assert committers == [threading.current_thread().name] * 3  # no hop to the writer
    assert recorder.inline_batches == 3 and recorder.batches == 3
    gateway.finish(run)
    recorder.close()  # the last result (left lingering) and the run's end are kept
    assert log.verify().events == log.size() == recorder.events
    assert [r.type for r in log.records()][-2:] == ["tool_result", "run_ended"]


async def test_other_runs_pending_go_through_the_writer_in_queue_order(tmp_path: Path) -> None:
    """Another run's events queued: this settle does not commit alone; either way the
    trail holds every event in the order it was recorded."""
    recorder, log, _ = recorder_at(tmp_path, linger_s=5.0, inline_max_s=60.0)
    recorder.record(Event(EventType.STEP, "other", 0, 1.0, {}))
    recorder.record(Event(EventType.STEP, "mine", 0, 1.1, {}))
    await recorder.settle("mine")
    assert recorder.inline_batches == 0 and log.size() == 2
    assert recorder._commit_lock.acquire(timeout=5)  # the writer is done with that commit
    recorder._commit_lock.release()
    recorder.record(Event(EventType.STEP, "mine", 1, 1.2, {}))
    await recorder.settle("mine")  # alone now: committed here
    assert recorder.inline_batches == 1
    recorder.close()
    assert [(r.run_id, r.data) for r in log.records()] == [
        ("other", {}),
        ("mine", {}),
        ("mine", {}),
    ]


async def test_concurrent_and_lone_calls_keep_one_ordered_chain(
    tmp_path: Path, make_policy: Callable[..., CompiledPolicy]
) -> None:
    recorder, log, _ = recorder_at(tmp_path, inline_max_s=60.0)
    gateway = Gateway(BELT, make_policy(), recorder=recorder)

    async def session(n: int, calls: int) -> None:
        run = gateway.start_run("wf", invoker="alice", agent_id="bot", request=f"r{n}")
        for i in range(calls):
            assert (await gateway.call(run, "lookup", {"order_id": f"ORD-{n}-{i}"})).ok
            await asyncio.sleep(0.001 * (n % 3))
        gateway.finish(run)

    for _ in range(2):
        await session(99, 5)  # alone: its own thread commits
        await asyncio.gather(*(session(n, 4) for n in range(8)))
    recorder.close()
    assert recorder.inline_batches > 0 and recorder.batches > recorder.inline_batches
    assert log.verify().events == log.size() == recorder.events
    by_run: dict[str, list[tuple[float, str]]] = {}
    for record in log.records():
        by_run.setdefault(record.run_id, []).append((record.at, record.type))
    assert len(by_run) == 18
    for kept in by_run.values():  # each run's events in the order they happened
        assert kept == sorted(kept, key=lambda k: k[0])
        assert kept[0][1] == "run_started" and kept[-1][1] == "run_ended"


async def test_a_failed_lone_commit_refuses_the_tool(
    tmp_path: Path, make_policy: Callable[..., CompiledPolicy]
) -> None:
    recorder, _, store = recorder_at(tmp_path, inline_max_s=60.0)
    gateway = Gateway(BELT, make_policy(), recorder=recorder)
    run = gateway.start_run("wf", invoker="alice", agent_id="bot", request="r")
    await recorder.settle(run.run_id)
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER block BEFORE INSERT ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        )
    ran: list[str] = []
    spy_on(gateway, "lookup", lambda: ran.append("lookup"))
    with pytest.raises(StoreError, match="disk says no"):
        await gateway.call(run, "lookup", {"order_id": "ORD-1"})
    assert ran == [] and recorder.inline_batches >= 1
    with pytest.raises(StoreError):
        recorder.close()  # the record is incomplete: said at close


def test_what_nobody_waits_for_is_written_while_the_writer_polls(tmp_path: Path) -> None:
    """After a lone commit the writer looks every linger_s instead of being woken: an
    event nobody waits for is still written about linger_s later."""
    recorder, log, _ = recorder_at(tmp_path, linger_s=0.01, inline_max_s=60.0)
    recorder.record(Event(EventType.STEP, "r", 0, 1.0, {}))
    asyncio.run(recorder.settle("r"))
    assert recorder.inline_batches == 1
    time.sleep(0.05)  # the writer now polls
    recorder.record(Event(EventType.STEP, "r", 1, 2.0, {}))
    deadline = time.monotonic() + 5
    while log.size() < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert log.size() == 2
    recorder.close()


def test_while_lone_calls_commit_the_writer_looks_every_poll_s_not_every_linger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once it polls, the writer is not woken by an event nobody waits for: it finds it at
    its next look, ``poll_s`` apart (each look takes the GIL from the calls), and writes it."""
    import opsgate.audit._recorder as recorder_module

    monkeypatch.setattr(recorder_module, "_POLL_AFTER_INLINE_S", 60.0)  # it keeps polling
    recorder, log, _ = recorder_at(tmp_path, linger_s=0.5, inline_max_s=60.0, poll_s=2.0)
    recorder.record(Event(EventType.STEP, "r", 0, 1.0, {}))  # wakes the writer: it lingers
    asyncio.run(recorder.settle("r"))  # takes the event along: a lone commit
    assert recorder.inline_batches == 1
    deadline = time.monotonic() + 5
    while not recorder._polling and time.monotonic() < deadline:
        time.sleep(0.01)  # the writer's linger ends: it finds nothing and starts to poll
    assert recorder._polling
    recorder.record(Event(EventType.STEP, "r", 1, 2.0, {}))
    time.sleep(0.7)
    assert log.size() == 1  # not woken: its linger (0.5 s) is past, the next look (2 s) not
    deadline = time.monotonic() + 5
    while log.size() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.size() == 2  # written at that look
    recorder.close()


def test_poll_s_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="poll_s"):
        recorder_at(tmp_path, poll_s=0)


async def test_followers_get_every_batch_in_order_before_a_flush_returns(
    tmp_path: Path,
) -> None:
    good, broken = Follower(), Follower(fail=True)
    recorder, log, _ = recorder_at(tmp_path, followers=(broken, good), inline_max_s=60.0)
    recorder.record(Event(EventType.STEP, "a", 0, 1.0, {}))
    await recorder.settle("a")  # a lone commit: handed over on this thread
    for i in range(1, 50):
        recorder.record(Event(EventType.STEP, "a", i, 1.0 + i, {}))
    recorder.flush()
    assert [e.seq for e in good.events] == list(range(50))
    assert len(good.batches) < 50  # handed over a batch at a time, not an event at a time
    assert recorder.follower_failures == len(broken.batches) > 0  # counted, never raised
    recorder.close()
    assert log.size() == 50


def test_followers_get_a_failed_batch_too(tmp_path: Path) -> None:
    """Events the recorder accepted reach the followers even when their commit failed (the
    calls may have run: the ledger still counts them)."""
    follower = Follower()
    recorder, _, store = recorder_at(tmp_path, followers=(follower,))
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER block BEFORE INSERT ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        )
    recorder.record(Event(EventType.TOOL_RESULT, "r", 0, 1.0, {"tool": "t"}))
    with pytest.raises(StoreError):
        recorder.flush()
    assert [e.type for e in follower.events] == [EventType.TOOL_RESULT]
    recorder.close()


async def test_store_recorders_feed_traces_and_costs_from_the_trail(
    tmp_path: Path, make_policy: Callable[..., CompiledPolicy]
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'all.db'}")
    recorders = store_recorders(store, signer=Signer.generate(), durable="write_ahead")
    assert recorders.all == (recorders.audit,)
    assert recorders.audit.followers == (recorders.traces, recorders.costs)
    gateway = Gateway(BELT, make_policy(), recorder=FanOutRecorder(*recorders.all))
    run = gateway.start_run("wf", invoker="alice", agent_id="bot", request="r")
    for n in range(3):
        assert (await gateway.call(run, "lookup", {"order_id": f"ORD-{n}"})).ok
    gateway.finish(run)
    assert recorders.close() == []  # nothing lost at close: every follower got it all
    with store.engine.connect() as conn:
        tools = conn.execute(select(func.count()).select_from(cost_entries)).scalar_one()
        names = [r[0] for r in conn.execute(select(spans_table.c.name))]
    assert tools == 3 and recorders.costs.failures == 0
    assert sorted(names).count("execute_tool lookup") == 3
    assert any(name.startswith("invoke_agent") for name in names)
    store.close()


async def test_failing_trace_and_cost_stores_never_fail_nor_delay_a_call(
    tmp_path: Path, make_policy: Callable[..., CompiledPolicy]
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'broken.db'}")
    with store.engine.begin() as conn:
        for table in ("spans", "cost_entries"):
            conn.execute(
                text(
                    f"CREATE TRIGGER no_{table} BEFORE INSERT ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'that table is broken'); END"
                )
            )
    recorders = store_recorders(store, signer=Signer.generate(), durable="write_ahead")
    gateway = Gateway(BELT, make_policy(), recorder=FanOutRecorder(*recorders.all))
    run = gateway.start_run("wf", invoker="alice", agent_id="bot", request="r")
    started = time.monotonic()
    for n in range(20):
        assert (await gateway.call(run, "lookup", {"order_id": f"ORD-{n}"})).ok
    gateway.finish(run)
    assert time.monotonic() - started < 5.0  # nobody waited for the broken stores
    assert recorders.close() == []  # the trail is whole
    assert recorders.costs.failures >= 20 and "broken" in recorders.costs.last_error
    assert recorders.audit.log.verify().events == recorders.audit.events
    store.close()


async def test_a_slow_lone_commit_hands_commits_back_to_the_writer(tmp_path: Path) -> None:
    """The event loop must not wait on a slow database: once lone commits take longer than
    ``inline_max_s`` (smoothed: one slow commit is not enough), settles go through the
    writer for a while."""
    recorder, log, _ = recorder_at(tmp_path, inline_max_s=0.01)
    append = log.append

    def slow(events: Any) -> list[int]:
        time.sleep(0.04)
        return append(events)

    log.append = slow  # type: ignore[method-assign]
    for i in range(5):
        recorder.record(Event(EventType.STEP, "r", i, 1.0 + i, {}))
        await recorder.settle("r")
    # 0.04 s each: the smoothed time passes 0.01 s at the second lone commit
    assert (recorder.inline_batches, recorder.batches) == (2, 5)
    recorder.close()
    assert log.size() == 5


async def test_a_checkpoint_due_on_a_lone_commit_is_signed_by_the_writer(tmp_path: Path) -> None:
    """Signing hashes every event since the last checkpoint (milliseconds): a lone settle
    on the event loop's thread leaves it to the writer, and a flush waits for it. Checkpoints
    that fall due before the writer gets to them are one signature (the last covers all)."""
    store = open_store(f"sqlite:///{tmp_path / 'inline.db'}")
    log = AuditLog(store, Signer.generate())
    recorder = AuditRecorder(
        log,
        durable="write_ahead",
        linger_s=5.0,
        inline_max_s=60.0,
        checkpoint_every=4,
        checkpoint_on_run_end=False,
    )
    signers: list[str] = []
    checkpoint = log.checkpoint

    def on_which_thread() -> Any:
        signers.append(threading.current_thread().name)
        return checkpoint()

    log.checkpoint = on_which_thread  # type: ignore[method-assign]
    for seq in range(12):
        recorder.record(Event(EventType.STEP, "r", seq, float(seq), {}))
        await recorder.settle("r")
    assert recorder.inline_batches == 12  # each commit was the caller's own
    recorder.flush()
    # due at 4, 8 and 12 events; a writer slow to wake (a loaded host) signs two as one
    assert set(signers) == {"opsgate-audit"} and len(signers) <= 3  # one at least
    assert log.checkpoints()[-1].tree_size == 12
    assert recorder.checkpoint_failures == 0
    recorder.close()
    assert log.verify().events == 12
