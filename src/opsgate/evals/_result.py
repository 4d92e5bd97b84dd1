"""`TaskResult`: one trial of one task, scored (what reports, merges and judges read)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TaskResult"]


@dataclass
class TaskResult:
    """One trial of one task, scored.

    ``route`` says how a routing agent handled the request, where it says (the lane, the
    screen that matched, why the route was escalated, the models used): the first thing to
    read when a router agent fails a task. ``model_unavailable`` marks a trial that ended
    because its model could not be reached (``error`` then says which model failed, and
    how): an infrastructure failure, left out of the metrics and the gate, never counted
    against the agent.
    """

    task_id: str
    trial: int
    tags: list[str]
    passed: bool
    failures: list[str]
    status: str
    reason: str
    output: str | None
    calls: list[dict[str, Any]] = field(default_factory=list)
    tool_precision: float = 1.0
    tool_recall: float = 1.0
    escalation_correct: bool = True
    unsafe_attempts: int = 0
    over_blocked: int = 0
    cost_usd: float = 0.0
    estimate: bool = False
    latency_s: float = 0.0
    first_output_s: float | None = None
    model_calls: int = 0
    plan: list[dict[str, Any]] = field(default_factory=list)
    plan_score: float | None = None
    plan_failures: list[str] = field(default_factory=list)
    schema_checked: int = 0
    schema_valid: int = 0
    command: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None
    judge_cost_usd: float = 0.0
    run_id: str = ""
    error: str | None = None
    model_unavailable: bool = False
    route: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the report."""
        return dataclasses.asdict(self)
