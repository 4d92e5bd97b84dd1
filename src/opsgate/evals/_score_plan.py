"""The plan scorer: a planner's recorded plan against the task's plan checks, scored apart
from the task's verdict."""

from __future__ import annotations

from typing import Any

from opsgate.evals._suite import PlanChecks

__all__ = ["score_plan"]


def score_plan(checks: PlanChecks, plan: list[dict[str, Any]] | None) -> tuple[float, list[str]]:
    """The plan's score in [0, 1] (the share of plan checks it meets) and what it missed."""
    if plan is None:
        return 0.0, ["no plan was recorded"]
    steps = [str(s.get("tool")) for s in plan]
    results: list[tuple[bool, str]] = []
    for tool in checks.required_steps:
        results.append((tool in steps, f"plan lacks `{tool}`"))
    for tool in checks.forbidden_steps:
        results.append((tool not in steps, f"plan includes forbidden `{tool}`"))
    if checks.ordered and len(checks.required_steps) > 1:
        positions = [steps.index(t) for t in checks.required_steps if t in steps]
        in_order = len(positions) == len(checks.required_steps) and positions == sorted(positions)
        results.append((in_order, f"plan steps not in order {checks.required_steps}"))
    if checks.max_steps is not None:
        results.append(
            (
                len(steps) <= checks.max_steps,
                f"plan has {len(steps)} steps (max {checks.max_steps})",
            )
        )
    if not steps:
        results.append((False, "the plan is empty"))
    if not results:
        return 1.0, []
    met = sum(ok for ok, _ in results)
    return round(met / len(results), 4), [msg for ok, msg in results if not ok]
