"""The write-ahead recorder's linger: events nobody waits for wait for the next waiter, so
a call's proposal and decision share the commit its `settle` waits for (one fsync a call,
not one an event); nothing waited for is held back, and nothing is left unwritten."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from opsgate.audit import AuditLog, AuditRecorder
from opsgate.gateway import Gateway
from opsgate.policy import CompiledPolicy
from opsgate.recorder import Event, EventType
from opsgate.store import open_store
from tests.conftest import BELT


def recorder_at(tmp_path: Path, linger_s: float) -> tuple[AuditRecorder, AuditLog]:
    log = AuditLog(open_store(f"sqlite:///{tmp_path / 'linger.db'}"), None)
    return AuditRecorder(log, durable="write_ahead", linger_s=linger_s), log


async def test_a_settle_takes_what_lingers_in_one_commit_at_once(tmp_path: Path) -> None:
    recorder, log = recorder_at(tmp_path, linger_s=5.0)
    recorder.record(Event(EventType.TOOL_CALL_PROPOSED, "r", 0, 1.0, {"tool": "t"}))
    await asyncio.sleep(0.05)  # the writer has the first event and waits for a waiter
    recorder.record(Event(EventType.DECISION, "r", 1, 1.1, {"effect": "allow"}))
    started = time.monotonic()
    await recorder.settle("r")
    assert time.monotonic() - started < 2.0  # the waiter ended the linger
    assert log.size() == 2 and recorder.batches == 1
    recorder.close()


def test_a_barrier_is_never_held_back(tmp_path: Path) -> None:
    recorder, log = recorder_at(tmp_path, linger_s=5.0)
    recorder.record(Event(EventType.STEP, "r", 0, 1.0, {}))
    started = time.monotonic()
    recorder.record(Event(EventType.RUN_ENDED, "r", 1, 2.0, {"status": "completed"}))
    assert time.monotonic() - started < 2.0 and log.size() == 2
    recorder.close()


def test_events_nobody_waits_for_are_written_after_the_linger(tmp_path: Path) -> None:
    recorder, log = recorder_at(tmp_path, linger_s=0.01)
    recorder.record(Event(EventType.STEP, "r", 0, 1.0, {}))
    deadline = time.monotonic() + 5
    while log.size() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.size() == 1
    recorder.close()


async def test_sequential_calls_take_one_commit_each(
    tmp_path: Path, make_policy: Callable[..., CompiledPolicy]
) -> None:
    """The previous call's result rides with the next call's settle: one commit a call
    (without the linger the writer committed the result alone while the client was
    answered, and the next settle often found that commit in flight and waited for two)."""
    recorder, log = recorder_at(tmp_path, linger_s=5.0)
    gateway = Gateway(BELT, make_policy(), recorder=recorder)
    run = gateway.start_run("wf", invoker="alice", agent_id="bot", request="r")
    await recorder.settle(run.run_id)
    before = recorder.batches
    for n in range(5):
        outcome = await gateway.call(run, "lookup", {"order_id": f"ORD-{n}"})
        assert outcome.ok
        await asyncio.sleep(0.02)  # the client reads the answer and sends the next call
    assert recorder.batches - before == 5
    gateway.finish(run)
    recorder.close()
    assert log.verify().events == log.size()
