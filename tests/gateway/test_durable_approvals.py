"""The durable approval queue: persisted requests, audited decisions, resume anywhere,
exactly-once execution, expiry."""

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
from typer.testing import CliRunner

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.cli.main import app
from opsgate.errors import ApprovalError
from opsgate.gateway import DurableApprovalQueue, Gateway, MappingSecretStore, OutcomeStatus
from opsgate.policy import CompiledPolicy
from opsgate.store import open_store
from tests.conftest import BELT

ROOT = Path(__file__).resolve().parents[2]
PAY_60 = {"order_id": "ORD-1", "amount": 60.0}


class Setup:
    def __init__(self, url: str, policy: CompiledPolicy, ttl_s: float = 3600) -> None:
        self.store = open_store(url)
        self.log = AuditLog(self.store, Signer.generate())
        self.recorder = AuditRecorder(self.log)
        self.queue = DurableApprovalQueue(
            self.store, recorder=self.recorder, ttl_s=ttl_s, poll_s=0.02
        )
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
def setup(db_url: str, make_policy: Callable[..., CompiledPolicy]) -> Any:
    s = Setup(db_url, make_policy())
    yield s
    s.close()


async def _wait_pending(queue: DurableApprovalQueue) -> Any:
    for _ in range(500):
        pending = await asyncio.to_thread(queue.list)
        if pending:
            return pending[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no pending request")


async def test_same_process_approval(setup: Setup) -> None:
    deps: dict[str, Any] = {}
    run = setup.gateway.start_run(
        "wf", invoker="alice", agent_id="bot", request="refund 60 on ORD-1", deps=deps
    )
    task = asyncio.create_task(setup.gateway.call(run, "pay", PAY_60))
    pending = await _wait_pending(setup.queue)
    assert pending.tool == "pay" and pending.args == {**PAY_60, "reason": "damaged"}
    assert pending.run_state["run_id"] == run.run_id
    with pytest.raises(ApprovalError, match="identity"):
        setup.queue.decide(pending.request_id, approved=True, approver=" ")
    await asyncio.to_thread(
        setup.queue.decide,
        pending.request_id,
        approved=True,
        approver="bob@example.com",
        reason="photo checked",
    )
    outcome = await task
    assert outcome.ok and deps["paid"] == [("ORD-1", 60.0)]
    with pytest.raises(ApprovalError, match=r"already approved by bob@example\.com"):
        setup.queue.decide(pending.request_id, approved=False, approver="eve")
    setup.gateway.finish(run)
    setup.recorder.flush()
    granted = [r for r in setup.log.records(run.run_id) if r.type == "approval_granted"]
    assert len(granted) == 1 and granted[0].data["approver"] == "bob@example.com"
    assert setup.log.verify().events > 0


async def test_denied_request(setup: Setup) -> None:
    deps: dict[str, Any] = {}
    run = setup.gateway.start_run("wf", invoker="a", agent_id="b", request="ORD-1 60", deps=deps)
    task = asyncio.create_task(setup.gateway.call(run, "pay", PAY_60))
    pending = await _wait_pending(setup.queue)
    await asyncio.to_thread(
        setup.queue.decide,
        pending.request_id,
        approved=False,
        approver="carol",
        reason="not eligible",
    )
    outcome = await task
    assert outcome.status is OutcomeStatus.APPROVAL_DENIED and "not eligible" in outcome.message
    assert "paid" not in deps


async def test_expiry_escalates_and_refuses_late_approvals(
    db_url: str, make_policy: Callable[..., CompiledPolicy]
) -> None:
    s = Setup(db_url, make_policy(), ttl_s=0.2)
    try:
        run = s.gateway.start_run("wf", invoker="a", agent_id="b", request="ORD-1 60", deps={})
        outcome = await s.gateway.call(run, "pay", PAY_60)
        assert outcome.status is OutcomeStatus.ESCALATED
        assert run.escalation is not None and run.escalation.reason == "approval_expired"
        [record] = s.queue.list(None)
        assert record.status == "expired"
        with pytest.raises(ApprovalError, match="already expired"):
            s.queue.decide(record.request_id, approved=True, approver="late")
    finally:
        s.close()


async def test_resume_in_another_process_executes_exactly_once(
    db_url: str, make_policy: Callable[..., CompiledPolicy], tmp_path: Path
) -> None:
    """Process A asks and is killed while waiting; a person approves; process B resumes."""
    key = tmp_path / "key.pem"
    Signer.from_file(key)
    open_store(db_url).close()
    script = textwrap.dedent(f"""
        import asyncio
        from pathlib import Path
        from opsgate.audit import AuditLog, AuditRecorder, Signer
        from opsgate.gateway import DurableApprovalQueue, Gateway, MappingSecretStore
        from opsgate.policy import load_policy
        from opsgate.store import open_store
        from tests.conftest import BASE_POLICY, BELT
        store = open_store({db_url!r})
        rec = AuditRecorder(AuditLog(store, Signer.from_file(Path({str(key)!r}))))
        queue = DurableApprovalQueue(store, recorder=rec, poll_s=0.05)
        policy = load_policy("p", BELT, text=BASE_POLICY % {{"stage": "autonomous_in_scope"}})
        gw = Gateway(BELT, policy, recorder=rec, approver=queue,
                     secrets=MappingSecretStore({{"PAY_KEY": "k-123456"}}))
        run = gw.start_run("wf", invoker="alice", agent_id="bot", request="refund 60 ORD-1",
                           deps={{}})
        async def main():
            await gw.call(run, "lookup", {{"order_id": "ORD-1"}})
            await gw.call(run, "pay", {{"order_id": "ORD-1", "amount": 60.0}})
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)  # noqa: ASYNC220
    s = Setup(db_url, make_policy())
    try:
        pending = await _wait_pending(s.queue)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the run in A is gone; a person approves from the CLI
        env = {"OPSGATE_DATABASE_URL": db_url, "OPSGATE_AUDIT_SIGNING_KEY": str(key)}
        result = CliRunner().invoke(
            app,
            ["approvals", "approve", pending.request_id[:10], "--as", "dana", "--reason", "ok"],
            env=env,
        )
        assert result.exit_code == 0, result.output
        deps: dict[str, Any] = {}
        both = await asyncio.gather(
            s.gateway.resume(pending.request_id, deps=deps),
            s.gateway.resume(pending.request_id, deps=deps),
            return_exceptions=True,
        )
        done = [r for r in both if not isinstance(r, BaseException)]
        executed = [o for _, o in done if o.ok]
        assert len(executed) == 1 and deps["paid"] == [("ORD-1", 60.0)]
        run = next(r for r, o in done if o.ok)
        assert [c.tool for c in run.completed] == ["lookup", "pay"]
        with pytest.raises(ApprovalError, match="already executed"):
            await s.gateway.resume(pending.request_id, deps=deps)
        s.gateway.finish(run)
        s.recorder.flush()
        kinds = [r.type for r in s.log.records(run.run_id)]
        assert kinds.count("approval_requested") == 1 and kinds.count("approval_granted") == 1
        assert "run_resumed" in kinds and kinds[-1] == "run_ended"
        assert s.log.verify().events >= len(kinds)
    finally:
        if proc.poll() is None:
            proc.kill()
        s.close()


def test_cli_lists_and_refuses_bad_decisions(setup: Setup) -> None:
    runner = CliRunner()
    env = {
        "OPSGATE_DATABASE_URL": str(
            setup.store.engine.url.render_as_string(hide_password=False)
        ).replace("postgresql+psycopg://", "postgresql://")
    }

    def ask() -> None:
        run = setup.gateway.start_run(
            "wf", invoker="alice", agent_id="bot", request="ORD-1 60", deps={}
        )
        setup.gateway.call_sync(run, "pay", PAY_60)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not setup.queue.list() and time.time() < deadline:
        time.sleep(0.01)
    result = runner.invoke(app, ["approvals", "list"], env={**env, "COLUMNS": "200"})
    assert result.exit_code == 0 and "pay" in result.output and "pending" in result.output
    result = runner.invoke(app, ["approvals", "approve", "nope-nope"], env=env)
    assert result.exit_code == 2  # --as is required
    result = runner.invoke(app, ["approvals", "approve", "nope-nope", "--as", "x"], env=env)
    assert result.exit_code == 2 and "no approval request" in result.output
    request_id = setup.queue.list()[0].request_id
    result = runner.invoke(app, ["approvals", "deny", request_id, "--as", "x"], env=env)
    assert result.exit_code == 0, result.output
    thread.join(10)
    result = runner.invoke(app, ["approvals", "approve", request_id, "--as", "x"], env=env)
    assert result.exit_code == 2 and "already denied" in result.output
    os.environ.pop("OPSGATE_DATABASE_URL", None)


async def test_a_stopped_waiter_leaves_the_request_to_be_resumed(setup: Setup) -> None:
    """Ctrl-C on a process waiting for an approval used to mark the request `expired`; it
    stays pending, a person decides it, and the call runs on resume (issue #11, fault 8)."""
    deps: dict[str, Any] = {}
    run = setup.gateway.start_run(
        "wf", invoker="alice", agent_id="bot", request="refund 60 on ORD-1", deps=deps
    )
    task = asyncio.create_task(setup.gateway.call(run, "pay", PAY_60))
    pending = await _wait_pending(setup.queue)
    task.cancel()  # what Ctrl-C does to the waiting coroutine
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = setup.queue.list(None)
    assert record.status == "pending"
    setup.queue.decide(pending.request_id, approved=True, approver="bob", reason="ok")
    _, outcome = await setup.gateway.resume(pending.request_id, deps=deps)
    assert outcome.ok and deps.get("paid")


async def test_the_gateway_s_own_approval_timeout_expires_the_durable_request(
    db_url: str, make_policy: Callable[..., CompiledPolicy]
) -> None:
    s = Setup(db_url, make_policy())
    s.gateway.approval_timeout_s = 0.2
    try:
        run = s.gateway.start_run("wf", invoker="a", agent_id="b", request="ORD-1 60", deps={})
        outcome = await s.gateway.call(run, "pay", PAY_60)
        assert outcome.status is OutcomeStatus.ESCALATED
        [record] = s.queue.list(None)
        assert record.status == "expired"
    finally:
        s.close()
