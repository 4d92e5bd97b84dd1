"""Deciding apart from doing: the executor interface, its shipped test double, and the
gateway's own discipline (steps of at most 40 lines, recorder and approver capabilities
checked when it is made, cap counters that agents can read but not reset)."""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

import pytest

from opsgate.errors import ToolTransientError
from opsgate.gateway import (
    ApprovalAnswer,
    ApprovalRequest,
    Gateway,
    InMemoryApprovalQueue,
    OutcomeStatus,
    RunStatus,
    ScriptedToolExecutor,
    ToolExecutor,
    ToolRequest,
)
from opsgate.gateway import _gateway as gateway_module  # tests this module
from opsgate.policy import CompiledPolicy, load_policy
from opsgate.recorder import Event, EventType, InMemoryRecorder
from tests.conftest import BASE_POLICY, BELT


def _policy() -> CompiledPolicy:
    return load_policy("p", BELT, text=BASE_POLICY % {"stage": "autonomous_in_scope"})


def _gateway(script: dict[str, Any], recorder: InMemoryRecorder) -> Gateway:
    return Gateway(BELT, _policy(), recorder=recorder, executor=ScriptedToolExecutor(script))


async def test_a_scripted_executor_answers_allowed_calls_and_runs_no_tool() -> None:
    recorder = InMemoryRecorder()
    executor = ScriptedToolExecutor({"lookup": {"order_id": "ORD-1", "status": "shipped"}})
    assert isinstance(executor, ToolExecutor)
    gateway = Gateway(BELT, _policy(), recorder=recorder, executor=executor)
    deps: dict[str, Any] = {}
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="ORD-1?", deps=deps)
    outcome = await gateway.call(run, "lookup", {"order_id": "ORD-1"})
    assert outcome.ok and outcome.result == {"order_id": "ORD-1", "status": "shipped"}
    (request,) = executor.requests
    assert isinstance(request, ToolRequest) and request.args == {"order_id": "ORD-1"}
    assert request.run_id == run.run_id and request.call_id == outcome.call_id
    # deciding is unchanged: a denied call never reaches the executor
    denied = await gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 500.0})
    assert denied.status is OutcomeStatus.DENIED and len(executor.requests) == 1
    types = [e.type for e in recorder.of_run(run.run_id)]
    assert types.count(EventType.DECISION) == 2 and EventType.TOOL_RESULT in types
    # the result is labelled like any tool's: the run's provenance knows it
    assert run.provenance.origin("shipped").trust != "unknown"


async def test_transient_failures_are_retried_within_the_runs_cap() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway({"lookup": [ToolTransientError("503"), TimeoutError(), "fine"]}, recorder)
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="ORD-1?")
    outcome = await gateway.call(run, "lookup", {"order_id": "ORD-1"})
    assert outcome.ok and outcome.result == "fine" and run.retries == 2
    assert len(recorder.of_type(EventType.TOOL_RETRY)) == 2
    # the cap (max_retries: 2) is spent: the next transient failure escalates the run
    gateway.executor = ScriptedToolExecutor({"lookup": ToolTransientError("503 again")})
    outcome = await gateway.call(run, "lookup", {"order_id": "ORD-2"})
    assert outcome.status is OutcomeStatus.ESCALATED and run.status is RunStatus.ESCALATED
    assert run.escalation is not None and run.escalation.cap == "max_retries"


async def test_failures_the_executor_reports_are_counted_errors() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway({"lookup": KeyError("ORD-9"), "draft": iter([1, 2])}, recorder)
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="ORD-9?")
    failed = await gateway.call(run, "lookup", {"order_id": "ORD-9"})
    assert failed.status is OutcomeStatus.ERROR and "KeyError" in failed.message
    odd = await gateway.call(run, "draft", {"text": "x"})
    assert odd.status is OutcomeStatus.ERROR
    unscripted = await gateway.call(run, "read_mail", {"mail_id": "m1"})
    assert "no scripted answer" in unscripted.message
    errors = [e.data["error_type"] for e in recorder.of_type(EventType.TOOL_ERROR)]
    assert errors == ["KeyError", "UnserialisableResult", "LookupError"]
    assert run.errors == 3 and run.active


async def test_a_write_that_timed_out_is_never_retried() -> None:
    gateway = _gateway({"note": TimeoutError()}, InMemoryRecorder())
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="note on T-1")
    outcome = await gateway.call(run, "note", {"ticket": "T-1", "text": "x"})
    assert outcome.status is OutcomeStatus.ERROR and run.retries == 0


async def test_secrets_reach_the_executor_resolved_and_never_the_record() -> None:
    from opsgate.gateway import MappingSecretStore

    recorder = InMemoryRecorder()
    executor = ScriptedToolExecutor({"pay": lambda r: {"used": r.secrets["PAY_KEY"]}})
    gateway = Gateway(
        BELT,
        _policy(),
        recorder=recorder,
        executor=executor,
        secrets=MappingSecretStore({"PAY_KEY": "sk-live-123"}),
    )
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="refund ORD-1 20")
    outcome = await gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 20.0})
    assert outcome.ok and executor.requests[0].secrets == {"PAY_KEY": "sk-live-123"}
    assert "sk-live-123" not in repr([e.data for e in recorder.events])
    ctx = executor.requests[0].kwargs()["ctx"]
    assert ctx.secrets == {"PAY_KEY": "sk-live-123"} and ctx.call_id == outcome.call_id


def test_the_runs_cap_counters_are_read_only() -> None:
    gateway = Gateway(BELT, _policy())
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="hi")
    gateway.step(run)
    assert run.steps == 1
    with pytest.raises(AttributeError):
        run.steps = 0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        run.cost_usd = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        run.call_counts["lookup:{}"] = 0  # type: ignore[index]
    # and they survive a snapshot, for a run resumed in another process
    restored = type(run).restore(run.snapshot())
    assert restored.steps == 1


class _OnlyRecords:
    def record(self, event: Event) -> None:
        pass


class _OnlyRequests:
    async def request(self, request: ApprovalRequest) -> ApprovalAnswer:
        return ApprovalAnswer(True, "x")


def test_a_recorder_or_approver_missing_part_of_its_protocol_is_refused_up_front() -> None:
    with pytest.raises(TypeError, match="lacks settle"):
        Gateway(BELT, _policy(), recorder=_OnlyRecords())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lacks give_up, persists"):
        Gateway(BELT, _policy(), approver=_OnlyRequests())  # type: ignore[arg-type]


async def test_an_in_memory_queue_forgets_a_request_given_up() -> None:
    queue = InMemoryApprovalQueue()
    gateway = Gateway(BELT, _policy(), approver=queue, approval_timeout_s=0.05)
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="refund ORD-1 80")
    outcome = await gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 80.0})
    assert outcome.status is OutcomeStatus.ESCALATED and queue.pending() == []


def _long_functions(cls: type, limit: int) -> list[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    return [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"  # type: ignore[operator]
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > limit  # type: ignore[operator]
    ]


def test_the_call_path_is_in_steps_of_at_most_40_lines() -> None:
    steps = ("call", "_check", "_denied", "_approval", "_execute", "_succeeded", "_retry_gate")
    long = [f for f in _long_functions(gateway_module.Gateway, 40) if f.split(":")[0] in steps]
    assert not long, long
