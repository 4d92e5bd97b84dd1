"""Runs that waited on the durable approval queue and were resumed: the wait is not run time
(`Run.restore`), and a call decided again on resume is not a new proposal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.gateway import DurableApprovalQueue, Gateway, MappingSecretStore
from opsgate.policy import CompiledPolicy
from opsgate.replay import replay_policy
from opsgate.store import open_store
from tests.replay._record import LIVE, policy

#: a wall-clock cap shorter than the wait for the person
QUICK = LIVE.replace("max_wall_seconds: 60", "max_wall_seconds: 1")
STRICT = QUICK.replace("constraints: {amount: {max: 200}}", "constraints: {amount: {max: 50}}")


async def _asked_then_resumed(url: str, asking: CompiledPolicy, resuming: CompiledPolicy) -> str:
    """A refund of 60 waits for a person past the wall-clock cap (its waiter stopped), is
    approved, and the run resumes under ``resuming``; then one more call."""
    store = open_store(url)
    recorder = AuditRecorder(AuditLog(store, Signer.generate()))
    queue = DurableApprovalQueue(store, recorder=recorder, poll_s=0.02)
    secrets = MappingSecretStore({"PAY_KEY": "k-123456"})
    gateways = [
        Gateway(policy.toolbelt, policy, recorder=recorder, approver=queue, secrets=secrets)
        for policy in (asking, resuming)
    ]
    try:
        run = gateways[0].start_run(
            "wf", invoker="ana", agent_id="bot", request="refund 60 on ORD-1", deps={}
        )
        assert (await gateways[0].call(run, "lookup", {"order_id": "ORD-1"})).ok
        waiting = asyncio.create_task(
            gateways[0].call(run, "pay", {"order_id": "ORD-1", "amount": 60.0})
        )
        for _ in range(500):  # until the request is persisted
            if await asyncio.to_thread(queue.list):
                break
            await asyncio.sleep(0.01)
        waiting.cancel()  # the waiter goes; the request stays
        await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.sleep(1.2)  # the person takes longer than the run may live
        (pending,) = queue.list()
        queue.decide(pending.request_id, approved=True, approver="lea", reason="ok")
        resumed, _ = await gateways[1].resume(pending.request_id, deps={})
        assert (await gateways[1].call(resumed, "lookup", {"order_id": "ORD-1"})).ok
        gateways[1].finish(resumed)
        recorder.flush()
        return run.run_id
    finally:
        for gateway in gateways:
            gateway.close()
        recorder.close()
        store.close()


async def test_a_resumed_run_replays_as_it_ran(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'opsgate.db'}"
    live = policy(QUICK)
    run_id = await _asked_then_resumed(url, live, live)
    store = open_store(url)
    try:
        kinds = [r.type for r in AuditLog(store).records(run_id)]
        assert "run_resumed" in kinds and "tool_result" in kinds[kinds.index("run_resumed") :]
        report = replay_policy(store, live, since="1h")
    finally:
        store.close()
    # lookup, pay (approval), lookup after the resume: the wait is not held against the cap
    assert (report.calls, report.changes) == (3, ())


async def test_a_call_denied_on_resume_is_not_a_new_proposal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'opsgate.db'}"
    run_id = await _asked_then_resumed(url, policy(QUICK), policy(STRICT))
    store = open_store(url)
    try:
        decisions: list[Any] = [
            (r.data["effect"], r.data["reason"])
            for r in AuditLog(store).records(run_id)
            if r.type == "decision"
        ]
        assert decisions[1:3] == [
            ("needs_approval", "approval_required"),
            ("deny", "arg_constraint"),  # decided again under the policy of the resume
        ]
        report = replay_policy(store, policy(QUICK), since="1h")
    finally:
        store.close()
    assert (report.calls, report.changes) == (3, ())
