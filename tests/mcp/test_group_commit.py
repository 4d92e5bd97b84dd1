"""The proxy's audit path (write-ahead, group-committed): each call's events are durable
before its tool runs, concurrent calls share commits, a lone caller never waits for
company, and what was committed survives the process being killed between groups."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.recorder import Event, EventType
from opsgate.store import open_store


def recorder_at(path: Path) -> tuple[AuditRecorder, AuditLog]:
    log = AuditLog(open_store(f"sqlite:///{path}"), Signer.generate())
    return AuditRecorder(log, durable="write_ahead", checkpoint_on_run_end=False), log


def call_events(run: str, seq: int) -> list[Event]:
    now = time.time()
    return [
        Event(EventType.TOOL_CALL_PROPOSED, run, seq, now, {"tool": "echo", "call_id": "c"}),
        Event(EventType.DECISION, run, seq + 1, now, {"tool": "echo", "effect": "allow"}),
    ]


async def test_a_lone_caller_never_waits_for_company(tmp_path: Path) -> None:
    recorder, log = recorder_at(tmp_path / "a.db")
    try:
        for n in range(20):  # one call after another: its result rides with the next decision
            for event in call_events("run-1", 3 * n):
                recorder.record(event)
            await recorder.settle("run-1")
            assert log.size() == 3 * n + 2  # durable before the tool would run
            recorder.record(Event(EventType.TOOL_RESULT, "run-1", 3 * n + 2, time.time(), {}))
    finally:
        recorder.close()
    assert recorder.delayed == 0  # several events a commit, but one writer: no commit delay
    assert log.size() == 60 and log.verify().events == 60


async def test_concurrent_calls_share_commits_and_each_is_durable_first(tmp_path: Path) -> None:
    recorder, log = recorder_at(tmp_path / "b.db")
    recorded = [0]
    durable_before_run: list[bool] = []

    async def call(run: str) -> None:
        for event in call_events(run, 0):
            recorder.record(event)
            recorded[0] += 1
        before = recorded[0]  # everything recorded so far, this call's decision included ...
        await recorder.settle(run)
        durable_before_run.append(log.size() >= before)  # ... is committed when the tool runs
        recorder.record(Event(EventType.TOOL_RESULT, run, 2, time.time(), {}))
        recorded[0] += 1

    try:
        for round_ in range(5):
            await asyncio.gather(*(call(f"run-{round_}-{k}") for k in range(16)))
    finally:
        recorder.close()
    assert all(durable_before_run) and len(durable_before_run) == 80
    assert recorder.events == log.size() == 80 * 3 and log.verify().events == 240
    assert recorder.batches < 80  # calls shared commits


KILLED = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from opsgate.audit import AuditLog, AuditRecorder, Signer
    from opsgate.recorder import Event, EventType
    from opsgate.store import open_store

    async def main():
        log = AuditLog(open_store(sys.argv[1]), Signer.generate())
        recorder = AuditRecorder(log, durable="write_ahead", checkpoint_on_run_end=False)
        for n in range(10_000):
            recorder.record(Event(EventType.DECISION, "run-k", n, time.time(), {"n": n}))
            await recorder.settle("run-k")
            print(n, flush=True)  # said only once durable

    asyncio.run(main())
    """
)


def test_a_kill_between_commit_groups_loses_nothing_that_was_settled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OPSGATE_HOME": str(tmp_path / "home")},
    )
    assert child.stdout is not None
    said = -1
    for line in child.stdout:
        said = int(line)
        if said >= 200:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    log = AuditLog(open_store(url))
    assert log.size() >= said + 1  # every event announced as settled is there
    assert log.verify().events == log.size()
