"""Scoring a trial: each concern has its scorer (`_score_calls`, `_score_escalation`,
`_score_output`, `_score_plan`, `_score_state`); `score` runs them over what a finished
trial left (`Trial`) and makes its `TaskResult`.

A trial whose model could not be reached or kept failing is marked ``model_unavailable``
(`model_unavailable` says why): its one failure names the model's, since the checks'
verdicts would only describe a run cut short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opsgate.contracts import Toolbelt
from opsgate.errors import (
    ModelError,
    ModelRateLimited,
    ModelRequestError,
    ModelServerError,
    ModelTimeout,
)
from opsgate.evals._result import TaskResult
from opsgate.evals._score_calls import gather, score_calls
from opsgate.evals._score_escalation import score_escalation
from opsgate.evals._score_output import score_output
from opsgate.evals._score_plan import score_plan
from opsgate.evals._score_state import score_state
from opsgate.evals._suite import Task
from opsgate.gateway import Run
from opsgate.recorder import Event, EventType

__all__ = ["INFRA_MODEL_ERRORS", "Trial", "model_unavailable", "score"]

#: Model failures that say nothing about the agent: the model could not be reached or did
#: not serve (no answer in time, 429 or 5xx or a broken connection after the retries, a
#: request refused for a wrong key, URL or model id). An answer that is not a valid call
#: (`ModelOutputError`) is the model's own doing and stays a verdict.
INFRA_MODEL_ERRORS: tuple[type[ModelError], ...] = (
    ModelTimeout,
    ModelRateLimited,
    ModelServerError,
    ModelRequestError,
)
_INFRA_NAMES = frozenset(cls.__name__ for cls in INFRA_MODEL_ERRORS)


@dataclass(frozen=True)
class Trial:
    """What a finished trial left to score."""

    task: Task
    trial: int
    run: Run | None
    events: Sequence[Event]
    world: Any
    agent_result: Any
    error: str | None  # the harness's: a crash or a timeout
    latency_s: float
    secrets: dict[str, str]
    command: dict[str, Any] | None = None  # the command check's outcome
    raised: ModelError | None = None  # the model failure the agent let out


def score(toolbelt: Toolbelt, conditions: Sequence[Any], trial: Trial) -> TaskResult:
    """Apply the task's checks and compute its metrics from the run's events."""
    task, run = trial.task, trial.run
    checks = task.checks
    seen = gather(trial.events)
    calls = score_calls(toolbelt, checks, seen.calls)
    escalation_correct, escalation_failures = score_escalation(checks, run)
    failures = calls.failures + escalation_failures
    schema_checked, schema_valid = calls.schema_checked, calls.schema_valid
    output = getattr(trial.agent_result, "output", None)
    if checks.output is not None:
        judged = score_output(checks.output, output or "", task, run, trial.secrets)
        failures += judged.failures
        schema_checked += judged.schema_checked
        schema_valid += judged.schema_valid
    plan_score: float | None = None
    plan_failures: list[str] = []
    if checks.plan is not None:
        plan_score, plan_failures = score_plan(checks.plan, seen.plan)
    failures += score_state(conditions, trial.world, run, trial.command)
    status = run.status.value if run is not None else "failed"
    reason = run.reason if run is not None else "harness_error"
    error = trial.error
    if error is not None:
        failures.insert(0, f"harness: {error}")
    if status == "failed" and not failures:
        failures.append(f"run failed: {reason}")
    unavailable = None if error is not None else model_unavailable(trial.events, run, trial.raised)
    if unavailable is not None:
        error = f"model unavailable: {unavailable}"
        failures = [error]
    return TaskResult(
        task_id=task.id,
        trial=trial.trial,
        tags=list(task.tags),
        passed=not failures,
        failures=failures,
        status=status,
        reason=reason,
        output=output,
        calls=seen.calls,
        tool_precision=round(calls.precision, 4),
        tool_recall=round(calls.recall, 4),
        escalation_correct=escalation_correct,
        unsafe_attempts=calls.unsafe_attempts,
        over_blocked=calls.over_blocked,
        cost_usd=run.cost_usd if run else 0.0,
        estimate=seen.estimate,
        latency_s=round(trial.latency_s, 4),
        first_output_s=None if seen.first_output_s is None else round(seen.first_output_s, 4),
        model_calls=run.model_calls if run else 0,
        plan=seen.plan or list(getattr(trial.agent_result, "plan", []) or []),
        plan_score=plan_score,
        plan_failures=plan_failures,
        schema_checked=schema_checked,
        schema_valid=schema_valid,
        command=trial.command,
        run_id=run.run_id if run else "",
        error=error,
        model_unavailable=unavailable is not None,
        route=_route(trial.agent_result),
    )


def _route(agent_result: Any) -> dict[str, Any] | None:
    """What a routing agent's result says of its route (None: nothing, or no such agent)."""
    said: dict[str, Any] = {}
    for key in ("lane", "screened", "route_escalation"):
        value = getattr(agent_result, key, None)
        if isinstance(value, str):
            said[key] = value
    models = getattr(agent_result, "models", None)
    if isinstance(models, list) and models:
        said["models"] = [str(m) for m in models]
    return said or None


def model_unavailable(
    events: Sequence[Event], run: Run | None, raised: ModelError | None = None
) -> str | None:
    """Why the trial's model was unavailable (``ModelServerError: …``), or None when it
    answered, or failed in a way that is the agent's (an invalid answer, a crash).

    The run must have ended on a model failure (``model_error``, as `guarded` ends it, or
    ``raised`` from an agent that let it out) whose kind is one of `INFRA_MODEL_ERRORS`: the
    last failed ``model_call`` event's ``error_type`` says which, else the run's output.
    """
    if raised is not None:
        if isinstance(raised, INFRA_MODEL_ERRORS):
            return f"{type(raised).__name__}: {raised}"
        return None
    if run is None or run.reason != "model_error":
        return None
    kind: str | None = None
    said: str | None = None
    for e in events:
        if e.type == EventType.MODEL_CALL and e.data.get("error_type"):
            kind = str(e.data["error_type"])
        elif e.type == EventType.RUN_ENDED and isinstance(e.data.get("output"), str):
            said = e.data["output"]
    if kind is None and said is not None:
        kind = said.partition(":")[0].strip()
    if kind not in _INFRA_NAMES:
        return None
    return said or kind
