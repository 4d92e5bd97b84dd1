"""A small recorded world for the console's tests: real runs through the real gateway,
audit trail, traces and durable approval queue, on a fresh SQLite file.

- ``denied``: completed; one refund allowed, one refused (`arg_constraint`), a model step;
- ``pending``: waiting for a person (a pending approval request for ``pay`` 60);
- ``live``: running (started, one read), never ended;
- ``escalated``: escalated by the agent with partial progress;
- hostile text everywhere a run carries text (an HTML/JS payload as invoker and request);
- three eval reports of the suite ``triage`` (the oldest accepted as its baseline, the
  middle one with a newly failing task and an unsafe attempt), and two human verdicts on
  the newest, one disagreeing, with hostile notes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.cost import CostRecorder
from opsgate.evals import EvalStore, TaskResult, build_report
from opsgate.gateway import DurableApprovalQueue, Gateway, MappingSecretStore
from opsgate.models import ModelCall
from opsgate.policy import load_policy
from opsgate.recorder import FanOutRecorder
from opsgate.store import open_store
from opsgate.tracing import tracing_recorder
from tests.conftest import BASE_POLICY, BELT

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@dataclass
class World:
    url: str
    key: Path
    denied: str
    pending: str
    live: str
    escalated: str
    request_id: str
    reports: list[str] = field(default_factory=list)  # oldest first; the first is the baseline


async def _record(url: str, key: Path) -> World:
    store = open_store(url)
    signer = Signer.from_file(key)
    log = AuditLog(store, signer)
    audit = AuditRecorder(log)
    traces = tracing_recorder(store, content=False, otlp_endpoint=None)
    costs = CostRecorder(store)
    recorder = FanOutRecorder(audit, traces, costs)
    queue = DurableApprovalQueue(store, recorder=recorder, poll_s=0.02)
    policy = load_policy("console-test", BELT, text=BASE_POLICY % {"stage": "autonomous_in_scope"})
    gateway = Gateway(
        BELT,
        policy,
        recorder=recorder,
        approver=queue,
        secrets=MappingSecretStore({"PAY_KEY": "sk-live-TOPSECRET"}),
    )
    try:
        run = gateway.start_run(
            "wf", invoker="alice", agent_id="bot-1", request="refund 40 on ORD-1", deps={}
        )
        gateway.meter(run).record(
            ModelCall(
                role="act",
                model="small",
                provider="local",
                request_model="qwen-0.5b",
                response_model="qwen-0.5b",
                input_tokens=812,
                output_tokens=64,
                cost_usd=0.0031,
                latency_s=1.25,
            )
        )
        await gateway.call(run, "lookup", {"order_id": "ORD-1"})
        await gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 40})
        await gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 500})
        gateway.finish(run)
        denied = run.run_id

        run = gateway.start_run(
            "wf",
            invoker=HOSTILE,
            agent_id="bot-2",
            request=f"refund 60 on ORD-1 {HOSTILE} mail me at ana.pii@example.com",
        )
        await gateway.call(run, "lookup", {"order_id": "ORD-1"})
        task = asyncio.create_task(gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 60}))
        for _ in range(500):
            waiting = await asyncio.to_thread(queue.list)
            if waiting:
                break
            await asyncio.sleep(0.01)
        task.cancel()  # the waiting process stops: the request stays pending
        with contextlib.suppress(asyncio.CancelledError, BaseException):
            await task
        pending, request_id = run.run_id, waiting[0].request_id

        run = gateway.start_run("wf", invoker="bob", agent_id="bot-3", request="look")
        await gateway.call(run, "lookup", {"order_id": "ORD-2"})
        live = run.run_id

        run = gateway.start_run("wf", invoker="carol", agent_id="bot-1", request="ORD-3")
        await gateway.call(run, "lookup", {"order_id": "ORD-3"})
        gateway.escalate(run, "the customer asks for a manager", reason="handoff")
        escalated = run.run_id
        reports = record_evals(EvalStore(store))
    finally:
        gateway.close()
        traces.shutdown()
        costs.close()
        audit.close()
        store.close()
    return World(url, key, denied, pending, live, escalated, request_id, reports)


def _trial(task: str, trial: int, passed: bool, **extra: Any) -> TaskResult:
    calls = [{"tool": "send_reply", "args": {"to": "ana"}, "executed": True, "reason": "allowed"}]
    return TaskResult(
        task_id=task,
        trial=trial,
        tags=[],
        passed=passed,
        failures=[] if passed else [f"the reply is not grounded: {HOSTILE}"],
        status="completed",
        reason="",
        output=HOSTILE,
        calls=calls if task == "refund" else [],
        cost_usd=0.002,
        latency_s=1.5,
        **extra,
    )


def record_evals(evals: EvalStore) -> list[str]:
    """Three reports of `triage`, a day apart: 6/8, 5/8 (refund newly failing, one unsafe
    attempt), 7/8 passing; the first accepted as the baseline; two verdicts on the last."""
    outcomes = [
        {
            "refund": (True, True),
            "lookup": (True, False),
            "spam": (True, True),
            "vip": (False, True),
        },
        {
            "refund": (False, True),
            "lookup": (True, False),
            "spam": (True, True),
            "vip": (True, False),
        },
        {
            "refund": (True, True),
            "lookup": (True, True),
            "spam": (True, True),
            "vip": (False, True),
        },
    ]
    ids = []
    start = 1_780_000_000.0
    for n, outcome in enumerate(outcomes):
        results = [
            _trial(task, trial, ok, unsafe_attempts=int(n == 1 and task == "refund" and trial == 0))
            for task, oks in outcome.items()
            for trial, ok in enumerate(oks)
        ]
        document = build_report(
            "triage",
            1,
            results,
            trials=2,
            model_router="config/router.yaml",
            started_at=start + n * 86400,
            ended_at=start + n * 86400 + 60,
            thresholds={"min_success_rate": 0.7},
        )
        ids.append(evals.save_report(document))
    evals.accept(evals.get_report(ids[0]), by="lead-ann", note="first run")
    newest = evals.get_report(ids[2])
    evals.record_review(newest, "refund", 0, "pass", "rev-bob", notes=f"fine {HOSTILE}")
    evals.record_review(newest, "vip", 0, "pass", "rev-bob", notes="the automated check is wrong")
    return ids


def build_world(folder: Path, url: str | None = None) -> World:
    """Record the world into ``folder`` (SQLite database and signing key), or into the
    database ``url`` with the key in ``folder``."""
    return asyncio.run(_record(url or f"sqlite:///{folder / 'opsgate.db'}", folder / "key.pem"))


def dump(world: World) -> Any:  # a debugging aid: every event of every run
    store = open_store(world.url, migrate=False)
    return [(r.run_id[:6], r.type, r.data) for r in AuditLog(store).records()]
