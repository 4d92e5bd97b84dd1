"""The state scorer: the task's CEL checks over the world the run left and the run itself,
and the verdict of its command check (an objective test of engineering work)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from opsgate.gateway import Run

__all__ = ["plain", "score_state"]


def plain(value: Any) -> Any:
    """A world as CEL sees it: dataclasses as maps, containers as lists and maps."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def score_state(
    conditions: Sequence[Any],  # compiled CEL checks (`evaluate(vars)`)
    world: Any,
    run: Run | None,
    command: dict[str, Any] | None,
) -> list[str]:
    """Every state check that does not hold (or cannot be evaluated), and a failed command."""
    failures: list[str] = []
    if command is not None and command.get("exit_code") != 0:
        failures.append(f"command check failed: {command.get('verdict')}")
    run_vars = {
        "status": run.status.value if run is not None else "failed",
        "reason": run.reason if run is not None else "harness_error",
        "cost_usd": run.cost_usd if run else 0.0,
        "tool_calls": run.tool_calls if run else 0,
    }
    plain_world = plain(world)
    for condition in conditions:
        try:
            if not condition.evaluate({"world": plain_world, "run": run_vars}):
                failures.append(f"state check failed: {condition.source}")
        except ValueError as exc:
            failures.append(f"state check error: {exc}")
    return failures
