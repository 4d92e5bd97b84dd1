"""The audit recorder: the gateway's events land durably, group-committed, and verify."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.errors import StoreError
from opsgate.gateway import Gateway, MappingSecretStore
from opsgate.policy import CompiledPolicy
from opsgate.recorder import Event, EventType
from opsgate.store import open_store
from tests.conftest import BELT

ROOT = Path(__file__).resolve().parents[2]


async def test_gateway_run_is_audited_end_to_end(
    db_url: str, make_policy: Callable[..., CompiledPolicy]
) -> None:
    store = open_store(db_url)
    log = AuditLog(store, Signer.generate())
    recorder = AuditRecorder(log)
    gateway = Gateway(
        BELT,
        make_policy(),
        recorder=recorder,
        secrets=MappingSecretStore({"PAY_KEY": "sk-live-0123456789abcdef"}),
    )
    run = gateway.start_run(
        "wf", invoker="alice", agent_id="bot", request="look up ORD-1 for ana@example.com"
    )
    await gateway.call(run, "lookup", {"order_id": "ORD-1"})
    await gateway.call(run, "send", {"to": "evil@attacker.test", "body": "x"})
    gateway.finish(run)
    recorder.close()
    records = log.records(run.run_id)
    kinds = [r.type for r in records]
    assert kinds[0] == "run_started" and kinds[-1] == "run_ended"
    assert kinds.count("decision") == 2
    assert records[0].data["invoker"] == "alice"
    assert records[0].data["policy_version"] == gateway.policy.version
    assert "ana@example.com" not in str([r.data for r in records])
    report = log.verify()
    assert report.events == len(records) and report.checkpoints >= 1
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM runs")).scalar_one() == "completed"
    store.close()


def test_concurrent_recording_is_group_committed(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    log = AuditLog(store, Signer.generate())
    recorder = AuditRecorder(log, checkpoint_every=0)

    def worker(n: int) -> None:
        for i in range(25):
            recorder.record(Event(EventType.STEP, f"run-{n}", i, time.time(), {"i": i}))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorder.close()
    assert recorder.events == 400
    assert recorder.batches < 400  # one commit covered several events
    assert log.verify().events == 400
    per_run = [r.data["i"] for r in log.records("run-3")]
    assert per_run == list(range(25))  # each writer's events in its own order


def test_failed_write_raises_in_the_caller_and_keeps_nothing_partial(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    store = open_store(f"sqlite:///{path}")
    log = AuditLog(store, None)
    recorder = AuditRecorder(log)
    recorder.record(Event(EventType.STEP, "r", 0, 1.0, {}))
    store.engine.dispose()
    path.chmod(0o444)
    (tmp_path).chmod(0o555)
    try:
        if os.geteuid() == 0:
            # root ignores file modes: make the database unwritable another way
            with store.engine.begin() as conn:
                conn.execute(
                    text(
                        "CREATE TRIGGER block BEFORE INSERT ON audit_events "
                        "BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly "
                        "database'); END"
                    )
                )
        with pytest.raises(StoreError, match="read-only"):
            recorder.record(Event(EventType.STEP, "r", 1, 2.0, {}))
    finally:
        (tmp_path).chmod(0o755)
        path.chmod(0o644)
    assert log.size() == 1
    log.verify()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_eight_processes_keep_one_verifiable_chain(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'shared.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_cluster").new_database()
    )
    key = tmp_path / "key.pem"
    open_store(url).close()
    Signer.from_file(key)
    script = textwrap.dedent(f"""
        import sys, time
        from opsgate.audit import AuditLog, AuditRecorder, Signer
        from opsgate.recorder import Event, EventType
        from opsgate.store import open_store
        from pathlib import Path
        log = AuditLog(open_store({url!r}), Signer.from_file(Path({str(key)!r})))
        rec = AuditRecorder(log, checkpoint_every=40)
        n = int(sys.argv[1])
        for i in range(60):
            rec.record(Event(EventType.STEP, f"p{{n}}", i, time.time(), {{"i": i}}))
        rec.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)], cwd=ROOT) for n in range(8)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 8
    store = open_store(url)
    log = AuditLog(store)
    report = log.verify()
    assert report.events == 480 and report.checkpoints >= 8
    assert all([r.data["i"] for r in log.records(f"p{n}")] == list(range(60)) for n in range(8))
    store.close()


@pytest.mark.slow
def test_sigkill_mid_run_loses_nothing_committed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    progress = tmp_path / "progress"
    script = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from opsgate.audit import AuditLog, AuditRecorder, Signer
        from opsgate.recorder import Event, EventType
        from opsgate.store import open_store
        rec = AuditRecorder(AuditLog(open_store({url!r}), Signer.generate()),
                            checkpoint_every=50)
        i = 0
        while True:
            rec.record(Event(EventType.STEP, "victim", i, time.time(), {{"i": i}}))
            Path({str(progress)!r} + ".tmp").write_text(str(i))
            os.replace({str(progress)!r} + ".tmp", {str(progress)!r})
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline:
        if progress.exists() and int(progress.read_text()) >= 200:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    acknowledged = int(progress.read_text())
    store = open_store(url)
    log = AuditLog(store)
    report = log.verify()
    assert report.events >= acknowledged + 1  # every acknowledged event survived
    assert [r.data["i"] for r in log.records("victim")] == list(range(report.events))
    store.close()


def test_full_disk_is_a_clear_error_and_leaves_no_partial_batch(tmp_path: Path) -> None:
    from sqlalchemy import event

    store = open_store(f"sqlite:///{tmp_path / 'full.db'}")
    log = AuditLog(store, None)
    log.append([Event(EventType.STEP, "r", 0, 1.0, {"i": 0})])
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    store.engine.dispose()

    @event.listens_for(store.engine, "connect")
    def _cap(dbapi_connection: Any, _record: Any) -> None:  # SQLite's own "disk full" path
        dbapi_connection.execute(f"PRAGMA max_page_count = {int(pages or 1) + 2}")

    log.close()
    big = {"blob": "x" * 20000}
    with pytest.raises(StoreError, match="full"):
        for i in range(1, 50):
            log.append([Event(EventType.STEP, "r", i, 1.0 + i, big) for _ in range(5)])
    size = log.size()
    assert size % 5 == 1  # whole batches or nothing
    assert log.verify().events == size
    store.close()


async def test_write_ahead_commits_before_a_tool_runs_and_shares_commits(
    tmp_path: Path, make_policy: Callable[..., CompiledPolicy]
) -> None:
    import asyncio

    store = open_store(f"sqlite:///{tmp_path / 'wa.db'}")
    log = AuditLog(store, Signer.generate())
    recorder = AuditRecorder(log, durable="write_ahead", checkpoint_on_run_end=False)
    seen_at_execution: list[tuple[int, int]] = []

    gateway = Gateway(BELT, make_policy(), recorder=recorder)
    original = recorder.settle

    recorded = [0]
    record = recorder.record

    def counting(event: Event) -> None:
        recorded[0] += 1
        record(event)

    recorder.record = counting  # type: ignore[method-assign]

    async def settle_then_look(run_id: str | None = None) -> None:
        before = recorded[0]  # everything recorded before the tool is about to run ...
        await original(run_id)
        seen_at_execution.append((before, log.size()))  # ... is committed by now

    recorder.settle = settle_then_look  # type: ignore[method-assign]

    async def one(n: int) -> None:
        run = gateway.start_run("wf", invoker="alice", agent_id="bot", request=f"r{n}")
        await gateway.call(run, "lookup", {"order_id": f"ORD-{n}"})
        gateway.finish(run)

    await asyncio.gather(*(one(n) for n in range(16)))
    recorder.close()
    # before each tool ran, its decision (and everything before it) was already committed
    assert all(committed >= before for before, committed in seen_at_execution)
    assert len(seen_at_execution) == 16
    assert recorder.events == log.size() and log.verify().events == log.size()
    assert recorder.batches < recorder.events / 2  # runs shared commits


async def test_write_ahead_refuses_the_tool_when_the_commit_fails(
    tmp_path: Path, make_policy: Callable[..., CompiledPolicy]
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'wa.db'}")
    log = AuditLog(store, None)
    recorder = AuditRecorder(log, durable="write_ahead")
    ran: list[str] = []
    gateway = Gateway(BELT, make_policy(), recorder=recorder)
    run = gateway.start_run("wf", invoker="alice", agent_id="bot", request="r")
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER block BEFORE INSERT ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        )
    original = gateway.toolbelt["lookup"].fn

    def spy(*args: Any, **kwargs: Any) -> Any:
        ran.append("lookup")
        return original(*args, **kwargs)

    object.__setattr__(gateway.toolbelt["lookup"], "fn", spy)
    try:
        with pytest.raises(StoreError, match="disk says no"):
            await gateway.call(run, "lookup", {"order_id": "ORD-1"})
    finally:
        object.__setattr__(gateway.toolbelt["lookup"], "fn", original)
    assert ran == []  # nothing happened that the trail could not hold


async def test_a_failed_batch_stops_its_run_and_no_other(tmp_path: Path) -> None:
    """A commit that fails marks the runs it held: their next events are refused before
    they are queued (never written later behind the caller's back), their settle raises,
    while other runs go on; flush reports the failure once (found by the soak test: one
    failed commit left a write-ahead recorder refusing everything for good)."""
    store = open_store(f"sqlite:///{tmp_path / 'wa.db'}")
    log = AuditLog(store, None)
    recorder = AuditRecorder(log, durable="write_ahead")
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER block BEFORE INSERT ON audit_events "
                "WHEN NEW.run_id = 'poisoned' BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        )
    recorder.record(Event(EventType.STEP, "poisoned", 0, 1.0, {}))  # not waited for: fails
    await asyncio.sleep(0.2)
    with pytest.raises(StoreError, match="earlier audit write of run `poisoned` failed"):
        recorder.record(Event(EventType.STEP, "poisoned", 1, 2.0, {"i": 1}))
    with pytest.raises(StoreError, match="run `poisoned`"):
        await recorder.settle("poisoned")
    # another run is not held back by the hole in the first one's trail
    recorder.record(Event(EventType.RUN_ENDED, "r", 0, 3.0, {"status": "completed"}))
    await recorder.settle("r")
    with pytest.raises(StoreError, match="disk says no"):
        recorder.flush()  # the record is incomplete: said once
    recorder.flush()
    assert [(r.run_id, r.data) for r in log.records()] == [("r", {"status": "completed"})]
    recorder._closed = True  # the writer is wedged on purpose; settle must not hang
    with pytest.raises(StoreError, match="closed"):
        await recorder.settle()


async def test_a_recorder_goes_on_after_the_database_comes_back(tmp_path: Path) -> None:
    """The soak's repro: one commit fails, then the database is fine again."""
    store = open_store(f"sqlite:///{tmp_path / 'wa.db'}")
    log = AuditLog(store, Signer.generate())
    recorder = AuditRecorder(log, durable="write_ahead", checkpoint_on_run_end=False)
    append = log.append
    failures = [1]

    def flaky(events: Any) -> list[int]:
        if failures[0]:
            failures[0] -= 1
            raise StoreError("database is restarting")
        return append(events)

    log.append = flaky  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="restarting"):
        recorder.record(Event(EventType.RUN_ENDED, "a", 0, 1.0, {"i": 0}))
    for i in (1, 2, 3):
        recorder.record(Event(EventType.STEP, "b", i, 2.0, {"i": i}))
    await recorder.settle("b")
    assert [r.data["i"] for r in log.records()] == [1, 2, 3]
    recorder.close()
