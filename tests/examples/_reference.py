"""What the example suites' tests share to replay reference calls: building a call, the tools
whose results a call takes values from, and replaying calls as a task through the harness
(with the package's `ReplayAgent`, not a model)."""

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
