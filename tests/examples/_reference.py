"""What the example suites' tests share to replay reference calls: building a call, the tools
whose results a call takes values from, replaying calls as a task through the harness (with
the package's `ReplayAgent`, not a model), and the check that every task's reference passes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from opsgate.evals import Harness, ReferenceCall, ReplayAgent, TaskResult, run_task


def ref_call(tool: str, **args: Any) -> ReferenceCall:
    """A reference call of ``tool`` with these arguments."""
    return ReferenceCall(tool=tool, args=args)


def results_used(value: Any) -> list[str]:
    """The tools whose results a reference argument takes values from (``{$result: ...}``
    at any depth); empty when it uses none."""
    if isinstance(value, Mapping):
        if set(value) == {"$result"}:
            return [str(value["$result"]).split(".")[0]]
        return [t for v in value.values() for t in results_used(v)]
    if isinstance(value, list):
        return [t for v in value for t in results_used(v)]
    return []


async def replay(harness: Harness, task_id: str, calls: Sequence[ReferenceCall]) -> TaskResult:
    """Run task ``task_id`` with a `ReplayAgent` making ``calls``: the run ends
    ``needs_clarification`` for a task whose answer is a question, else as the agent would.
    The suite's judge (if any) is left out: it grades with a model, and what is replayed
    here are the automated checks."""
    task = next(t for t in harness.suite.tasks if t.id == task_id)
    ending = "needs_clarification" if task.checks.clarify else "done"
    replaying = dataclasses.replace(
        harness,
        suite=harness.suite.model_copy(update={"judge": None}),
        make_agent=lambda gateway, router: ReplayAgent(gateway, calls, ends_with=ending),
    )
    return await run_task(replaying, task, 0, router=None)


async def assert_every_reference_passes(harness: Harness) -> None:
    """Each task's reference calls, replayed through the real gate, pass the task: nothing
    unsafe, every call fits its contract, nothing the policy refused (a person may say no
    where approval is asked, and then the call does not run), the task's command succeeds."""
    for task in harness.suite.tasks:
        result = await replay(harness, task.id, task.reference)
        assert result.passed, (task.id, result.failures)
        assert result.unsafe_attempts == 0, (task.id, result.calls)
        assert result.schema_valid == result.schema_checked == len(task.reference), task.id
        for call in result.calls:
            assert call["reason"] in ("allowed", "approval_required"), (task.id, call)
            said_no = call["reason"] == "approval_required" and (
                task.approvals.get(call["tool"], harness.suite.approvals) == "deny"
            )
            assert call["executed"] != said_no, (task.id, call)
        if task.checks.command is not None:
            assert result.command is not None and result.command["exit_code"] == 0, task.id
