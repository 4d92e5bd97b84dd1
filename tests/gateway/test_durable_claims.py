"""The durable approval queue under the soak's faults (issue #11): the outcome of a decided
request is claimed once, so a run goes on in exactly one process; a run that ended is never
resumed; an approved call runs only once its grant is on the audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import update

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.errors import ApprovalError
from opsgate.gateway import (
    ApprovalTakenOver,
    DurableApprovalQueue,
    Gateway,
    MappingSecretStore,
    OutcomeStatus,
    _durable,
)
from opsgate.policy import CompiledPolicy
from opsgate.store import approvals, open_store
from tests.conftest import BELT

PAY_60 = {"order_id": "ORD-1", "amount": 60.0}


class Worker:
    """One gateway process: its own recorder (write-ahead, as workers run), queue, gateway."""

    def __init__(self, url: str, policy: CompiledPolicy, signer: Signer) -> None:
        self.store = open_store(url)
        self.log = AuditLog(self.store, signer)
        self.recorder = AuditRecorder(self.log, durable="write_ahead")
        self.queue = DurableApprovalQueue(self.store, recorder=self.recorder, poll_s=0.02)
        self.gateway = Gateway(
            BELT,
            policy,
            recorder=self.recorder,
            approver=self.queue,
            secrets=MappingSecretStore({"PAY_KEY": "k-123456"}),
        )

    def close(self) -> None:
        self.gateway.close()
        self.recorder.close()
        self.store.close()


@pytest.fixture
def two(db_url: str, make_policy: Callable[..., CompiledPolicy]) -> Iterator[list[Worker]]:
    signer = Signer.generate()
    workers = [Worker(db_url, make_policy(), signer) for _ in range(2)]
    yield workers
    for w in workers:
        w.close()


async def _pending(queue: DurableApprovalQueue) -> Any:
    for _ in range(500):
        found = await asyncio.to_thread(queue.list)
        if found:
            return found[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no pending request")


def _kinds(worker: Worker, run_id: str) -> list[str]:
    worker.recorder.flush()
    return [r.type for r in worker.log.records(run_id)]


async def test_a_denial_consumed_by_its_waiter_cannot_be_resumed_elsewhere(
    two: list[Worker],
) -> None:
    """The soak found it: a denied request stayed resumable after the waiting process had
    gone on with the run, so a sweeper resumed it and the run went on twice (its next write
    executed twice, two run ends)."""
    a, b = two
    run = a.gateway.start_run("wf", invoker="alice", agent_id="bot", request="ORD-1 60", deps={})
    task = asyncio.create_task(a.gateway.call(run, "pay", PAY_60))
    pending = await _pending(a.queue)
    a.queue.decide(pending.request_id, approved=False, approver="carol", reason="no")
    outcome = await task
    assert outcome.status is OutcomeStatus.APPROVAL_DENIED
    a.gateway.finish(run)
    with pytest.raises(ApprovalError, match="already executed, or its run resumed"):
        await b.gateway.resume(pending.request_id, deps={})
    assert _kinds(a, run.run_id).count("run_ended") == 1


async def test_concurrent_resumes_of_a_denial_let_one_process_go_on(two: list[Worker]) -> None:
    a, b = two
    run = a.gateway.start_run("wf", invoker="alice", agent_id="bot", request="ORD-1 60", deps={})
    task = asyncio.create_task(a.gateway.call(run, "pay", PAY_60))
    pending = await _pending(a.queue)
    task.cancel()  # the waiting process stops
    with pytest.raises(asyncio.CancelledError):
        await task
    a.queue.decide(pending.request_id, approved=False, approver="carol", reason="no")
    results = await asyncio.gather(
        a.gateway.resume(pending.request_id, deps={}),
        b.gateway.resume(pending.request_id, deps={}),
        return_exceptions=True,
    )
    went_on = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ApprovalError)]
    assert len(went_on) == 1 and len(refused) == 1, results
    b.recorder.flush()  # the winner may be either
    kinds = _kinds(a, run.run_id)
    assert kinds.count("run_resumed") == 1


async def test_a_waiter_whose_request_another_process_resumed_stops(two: list[Worker]) -> None:
    """A person approves, another process resumes the run first: the waiting process must
    not go on with the run as well (it used to get a refusal and carry on)."""
    a, b = two
    deps_a: dict[str, Any] = {}
    deps_b: dict[str, Any] = {}
    run = a.gateway.start_run(
        "wf", invoker="alice", agent_id="bot", request="refund 60 ORD-1", deps=deps_a
    )
    a.queue.poll_s = 0.5  # the waiter looks late
    task = asyncio.create_task(a.gateway.call(run, "pay", PAY_60))
    pending = await _pending(a.queue)
    a.queue.decide(pending.request_id, approved=True, approver="bob", reason="ok")
    _, outcome = await b.gateway.resume(pending.request_id, deps=deps_b)
    assert outcome.ok and deps_b["paid"] == [("ORD-1", 60.0)]
    with pytest.raises(ApprovalTakenOver):
        await task
    assert "paid" not in deps_a


async def test_a_run_that_ended_while_waiting_is_never_resumed(
    two: list[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approver failed (the database restarting), the run escalated, its request could
    not be expired; a person approves it later: resuming it would bring an ended run back."""
    a, b = two
    run = a.gateway.start_run("wf", invoker="alice", agent_id="bot", request="ORD-1 60", deps={})

    async def broken(request: Any) -> Any:
        await asyncio.to_thread(a.queue._insert, request)
        raise ConnectionError("the database went away")

    def cannot(request_id: str) -> None:
        raise ConnectionError("still away")

    monkeypatch.setattr(a.queue, "request", broken)
    monkeypatch.setattr(a.queue, "give_up", cannot)
    outcome = await a.gateway.call(run, "pay", PAY_60)
    assert outcome.status is OutcomeStatus.ESCALATED and run.reason == "approver_error"
    [record] = b.queue.list()
    b.queue.decide(record.request_id, approved=True, approver="bob", reason="late")
    deps: dict[str, Any] = {}
    with pytest.raises(ApprovalError, match="already ended"):
        await b.gateway.resume(record.request_id, deps=deps)
    assert "paid" not in deps
    assert _kinds(b, run.run_id).count("run_ended") == 1


async def test_an_approval_runs_only_once_its_grant_is_on_the_trail(
    two: list[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approver flips the request, then records the grant: a process that executes the
    call in between (or after the approver died) ran a write whose approval the trail did
    not hold. Now it waits for the grant, and records it itself when it never comes."""
    a, _ = two
    monkeypatch.setattr(_durable, "_GRANT_WAIT_S", 0.2)
    deps: dict[str, Any] = {}
    run = a.gateway.start_run(
        "wf", invoker="alice", agent_id="bot", request="refund 60 ORD-1", deps=deps
    )
    task = asyncio.create_task(a.gateway.call(run, "pay", PAY_60))
    pending = await _pending(a.queue)
    with a.store.engine.begin() as conn:  # the approver's update, then it is killed
        conn.execute(
            update(approvals)
            .where(approvals.c.request_id == pending.request_id)
            .values(status="approved", approver="bob", reason="ok", decided_at=0.0)
        )
    outcome = await task
    assert outcome.ok and deps["paid"] == [("ORD-1", 60.0)]
    a.recorder.flush()
    records = a.log.records(run.run_id)
    kinds = [r.type for r in records]
    assert kinds.count("approval_granted") == 1
    assert kinds.index("approval_granted") < kinds.index("tool_result")
    granted = next(r for r in records if r.type == "approval_granted")
    assert granted.data["approver"] == "bob" and granted.data["request_id"] == pending.request_id


async def test_the_approver_s_own_grant_is_not_recorded_twice(two: list[Worker]) -> None:
    a, _ = two
    deps: dict[str, Any] = {}
    run = a.gateway.start_run(
        "wf", invoker="alice", agent_id="bot", request="refund 60 ORD-1", deps=deps
    )
    task = asyncio.create_task(a.gateway.call(run, "pay", PAY_60))
    pending = await _pending(a.queue)
    a.queue.decide(pending.request_id, approved=True, approver="bob", reason="ok")
    assert (await task).ok
    assert _kinds(a, run.run_id).count("approval_granted") == 1
