"""Reports (JSON, schema version 1), the metrics, thresholds and the regression gate.

Metrics (per task in ``tasks``, aggregated in ``metrics``):

- ``success_rate``: trials that passed every check (no human repair) / trials, with a
  Wilson 95% interval (``success_low``, ``success_high``);
- ``pass_at_k``: tasks with at least one passing trial / tasks; ``pass_hat_k``: tasks whose
  k trials all passed / tasks (the flaky-agent measure);
- ``tool_precision``: calls that ran and were not forbidden / calls proposed (mean);
- ``tool_recall``: required calls made / required calls (mean);
- ``escalation_accuracy``: trials that escalated iff they should / trials;
- ``unsafe_attempts``: calls the gate denied as unsafe or the suite forbids (total), save
  those the task requires;
- ``over_blocked``: calls the task requires that the gate refused (a policy too strict);
- ``cost_per_successful_task``: total cost / passing trials (None when none passed);
- ``latency_p50`` / ``latency_p95`` per task (seconds), and time to first useful output;
- ``schema_validity``: tool calls whose arguments fitted the tool's contract, plus outputs
  valid under the task's JSON schema / all of those checked (None when nothing was);
- ``plan_quality``: mean plan score of tasks with plan checks (planner agents; scored apart
  from the verdict);
- ``judge_score``: the LLM judge's mean score (0..1) over the trials it graded (only those
  that passed the automated checks), ``judge_passed`` / ``judge_errors`` the counts, and
  ``judge_cost_usd`` its own cost, not in the agent's cost per successful task.

Every metric above is over the trials that reached a model. ``model_unavailable`` counts
the others apart (their model could not be reached or kept failing: an infrastructure
failure, no verdict on the agent), and ``errors`` counts harness errors (crashes,
timeouts) among the scored trials. When no trial reached a model the run has no verdict:
`no_verdict` says so, and the gate fails with that reason whatever the thresholds.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
import statistics
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from opsgate.errors import SuiteError
from opsgate.evals._result import TaskResult

__all__ = [
    "REPORT_SCHEMA",
    "build_report",
    "check_rate",
    "check_version",
    "compare",
    "covered_tasks",
    "load_report",
    "no_verdict",
    "report_problem",
    "results_of",
    "thresholds_failures",
    "wilson",
]

REPORT_SCHEMA = 1


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return round(ordered[index], 4)


def check_rate(option: str, value: float | None) -> None:
    """Refuse a rate given as a percentage: rates are shares, 0..1 (``0.88``, not ``88``).

    Raises:
        SuiteError: ``value`` is outside 0..1, naming ``option`` and what was likely meant.
    """
    if value is None or 0.0 <= value <= 1.0:
        return
    hint = ""
    if 1.0 < value <= 100.0:
        hint = f": did you mean {value / 100:g} ({value:g}%)?"
    raise SuiteError(f"{option} {value:g} is not a rate: rates are between 0 and 1{hint}")


def metrics(results: Sequence[TaskResult]) -> dict[str, Any]:
    """Aggregate metrics of the trials that reached a model (the others counted apart)."""
    unavailable = sum(r.model_unavailable for r in results)
    results = [r for r in results if not r.model_unavailable]
    n = len(results)
    passed = sum(r.passed for r in results)
    low, high = wilson(passed, n)
    by_task: dict[str, list[bool]] = {}
    for r in results:
        by_task.setdefault(r.task_id, []).append(r.passed)
    total_cost = sum(r.cost_usd for r in results)
    firsts = [r.first_output_s for r in results if r.first_output_s is not None]
    plans = [r.plan_score for r in results if r.plan_score is not None]
    judged = [
        float(r.judge["score"]) for r in results if r.judge and r.judge.get("score") is not None
    ]
    return {
        "trials": n,
        "tasks": len(by_task),
        "passed": passed,
        "success_rate": round(passed / n, 4) if n else 0.0,
        "success_low": round(low, 4),
        "success_high": round(high, 4),
        "pass_at_k": round(sum(any(v) for v in by_task.values()) / len(by_task), 4)
        if by_task
        else 0.0,
        "pass_hat_k": round(sum(all(v) for v in by_task.values()) / len(by_task), 4)
        if by_task
        else 0.0,
        "tool_precision": round(statistics.fmean(r.tool_precision for r in results), 4)
        if n
        else 1.0,
        "tool_recall": round(statistics.fmean(r.tool_recall for r in results), 4) if n else 1.0,
        "escalation_accuracy": round(sum(r.escalation_correct for r in results) / n, 4)
        if n
        else 1.0,
        "unsafe_attempts": sum(r.unsafe_attempts for r in results),
        "over_blocked": sum(r.over_blocked for r in results),
        "errors": sum(r.error is not None for r in results),
        "model_unavailable": unavailable,
        "total_cost_usd": round(total_cost, 8),
        "cost_per_successful_task": round(total_cost / passed, 8) if passed else None,
        "cost_is_estimate": any(r.estimate for r in results),
        "latency_p50": _quantile([r.latency_s for r in results], 0.5),
        "latency_p95": _quantile([r.latency_s for r in results], 0.95),
        "first_output_p50": _quantile(firsts, 0.5),
        "model_calls": sum(r.model_calls for r in results),
        "schema_validity": round(
            sum(r.schema_valid for r in results) / sum(r.schema_checked for r in results), 4
        )
        if any(r.schema_checked for r in results)
        else None,
        "plan_quality": round(statistics.fmean(plans), 4) if plans else None,
        "judge_score": round(statistics.fmean(judged), 4) if judged else None,
        "judge_passed": sum(1 for r in results if r.judge and r.judge.get("passed") is True),
        "judge_errors": sum(1 for r in results if r.judge and r.judge.get("error")),
        "judge_cost_usd": round(sum(r.judge_cost_usd for r in results), 8),
    }


def build_report(
    suite_name: str,
    suite_version: int,
    results: Sequence[TaskResult],
    *,
    trials: int,
    model_router: str,
    started_at: float,
    ended_at: float,
    thresholds: dict[str, Any],
    shard: str | None = None,
    suite_tasks: int | None = None,
) -> dict[str, Any]:
    """The report document (JSON data).

    ``suite_tasks`` is how many tasks the whole suite has (a run of a tag, of some task ids
    or of a shard covers fewer): `agent-eval baseline accept` and `compare` say so.
    """
    computed = metrics(results)
    return {
        "schema_version": REPORT_SCHEMA,
        "report_id": uuid.uuid4().hex,
        "suite": suite_name,
        "suite_version": suite_version,
        "model_router": model_router,
        "trials": trials,
        "shard": shard,
        "suite_tasks": suite_tasks,
        "started_at": started_at,
        "ended_at": ended_at,
        "metrics": computed,
        "thresholds": thresholds,
        "gate": {"failures": thresholds_failures(computed, **thresholds)},
        "tasks": [r.as_dict() for r in results],
    }


def thresholds_failures(
    m: dict[str, Any],
    *,
    max_cost_per_task: float | None = None,
    min_success_rate: float | None = None,
) -> list[str]:
    """Absolute thresholds that do not hold, one sentence each (or, when no trial reached a
    model, that there is no verdict at all)."""
    missing = _no_verdict_metrics(m)
    if missing is not None:
        return [missing]
    failures = []
    if min_success_rate is not None and m["success_rate"] < min_success_rate:
        failures.append(
            f"success rate {m['success_rate']:.2%} is below the minimum {min_success_rate:.2%}"
        )
    cost = m["cost_per_successful_task"]
    if max_cost_per_task is not None:
        if cost is None:
            failures.append("no task succeeded, so cost per successful task is unbounded")
        elif cost > max_cost_per_task:
            failures.append(
                f"cost per successful task ${cost:.6f} is above the maximum "
                f"${max_cost_per_task:.6f}"
            )
    return failures


def _no_verdict_metrics(m: dict[str, Any]) -> str | None:
    unavailable = m.get("model_unavailable") or 0
    if unavailable and not m.get("trials"):
        return (
            f"no trial reached a model ({unavailable} model_unavailable): the model server is "
            "down or failing, and this run says nothing about the agent"
        )
    return None


def no_verdict(document: dict[str, Any]) -> str | None:
    """Why a report holds no verdict on the agent (no trial reached a model), or None."""
    m = document.get("metrics")
    return _no_verdict_metrics(m) if isinstance(m, dict) else None


def covered_tasks(document: dict[str, Any]) -> tuple[int, int | None]:
    """(tasks the report has a verdict on, tasks its suite has when the report says).

    A task counts when at least one of its trials reached a model.
    """
    total = document.get("suite_tasks")
    known = total if isinstance(total, int) and not isinstance(total, bool) else None
    return len(_by_task(document)), known


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report, refusing malformed ones and newer schema versions."""
    try:
        document = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise SuiteError(f"cannot read report `{path}`: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise SuiteError(f"`{path}` is not a JSON report: {exc}") from None
    if not isinstance(document, dict) or "metrics" not in document:
        raise SuiteError(f"`{path}` is not an agent-eval report")
    check_version(document, f"`{path}`")
    problem = report_problem(document)
    if problem is not None:
        raise SuiteError(f"`{path}` is not a valid report: {problem}")
    return document


def check_version(document: dict[str, Any], where: str) -> None:
    """Refuse a report of a schema newer than this agent-eval reads (or of none)."""
    version = document.get("schema_version")
    if not isinstance(version, int) or version > REPORT_SCHEMA:
        raise SuiteError(
            f"{where} has report schema `{version}`, newer than this agent-eval "
            f"reads ({REPORT_SCHEMA}): upgrade opsgate"
        )


@functools.cache
def _report_validator() -> Any:
    schema = orjson.loads(
        importlib.resources.files("opsgate.evals").joinpath("report.schema.json").read_bytes()
    )
    return jsonschema.Draft202012Validator(schema)


def report_problem(document: Any) -> str | None:
    """What makes ``document`` not a version-1 report (JSON Schema), or None."""
    error = jsonschema.exceptions.best_match(_report_validator().iter_errors(document))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}" + (f" at /{where}" if where else "")


def compare(
    report: dict[str, Any],
    baseline: dict[str, Any],
    *,
    max_success_drop: float | None = None,
    max_cost_increase: float | None = None,
    max_unsafe_increase: int | None = None,
) -> tuple[list[str], list[str], list[str]]:
    """(regressions, notes, per-task changes) of ``report`` against ``baseline``.

    A success drop beyond ``max_success_drop`` is a regression only when the two Wilson
    intervals do not overlap (with one trial per task they are wide: the drop is then
    judged on the point estimates alone, as a single run cannot tell more).
    """
    if report.get("suite") != baseline.get("suite"):
        raise SuiteError(
            f"the baseline is of suite `{baseline.get('suite')}`, the report of "
            f"`{report.get('suite')}`"
        )
    for document, which in ((report, "report"), (baseline, "baseline")):
        missing = no_verdict(document)
        if missing is not None:
            raise SuiteError(f"nothing to compare: in the {which}, {missing}")
    new, old = report["metrics"], baseline["metrics"]
    regressions: list[str] = []
    notes: list[str] = []
    new_ids, old_ids = set(_by_task(report)), set(_by_task(baseline))
    common = new_ids & old_ids
    if not common and new_ids and old_ids:
        raise SuiteError("the report and the baseline share no task: nothing to compare")
    if new_ids != old_ids and common:
        new, old = _metrics_of(report, common), _metrics_of(baseline, common)
    sizes = [covered_tasks(d)[1] for d in (report, baseline)]
    total = max([len(new_ids | old_ids), *(n for n in sizes if n is not None)])
    if len(common) < total:
        notes.append(
            f"compared on {len(common)} of {total} tasks: the report has a verdict on "
            f"{len(new_ids)}, the baseline on {len(old_ids)}"
        )
    for document, which in ((report, "report"), (baseline, "baseline")):
        unavailable = document["metrics"].get("model_unavailable") or 0
        if unavailable:
            notes.append(
                f"{unavailable} trial{'s' if unavailable != 1 else ''} of the {which} could "
                "not reach a model (model_unavailable): left out of the comparison"
            )
    drop = old["success_rate"] - new["success_rate"]
    notes.append(
        f"success rate {old['success_rate']:.2%} -> {new['success_rate']:.2%} ({-drop:+.2%})"
    )
    if max_success_drop is not None and drop > max_success_drop:
        overlap = new["success_high"] >= old["success_low"]
        if report.get("trials", 1) > 1 and overlap:
            notes.append(
                f"the drop of {drop:.2%} is within the 95% intervals "
                f"[{new['success_low']:.2%}, {new['success_high']:.2%}] vs "
                f"[{old['success_low']:.2%}, {old['success_high']:.2%}]: noise"
            )
        else:
            regressions.append(
                f"success rate dropped by {drop:.2%} (allowed {max_success_drop:.2%})"
            )
    old_cost, new_cost = old.get("cost_per_successful_task"), new.get("cost_per_successful_task")
    if old_cost and new_cost is not None:
        rise = new_cost / old_cost - 1
        notes.append(f"cost per successful task ${old_cost:.6f} -> ${new_cost:.6f} ({rise:+.1%})")
        if max_cost_increase is not None and rise > max_cost_increase:
            regressions.append(
                f"cost per successful task rose by {rise:.1%} (allowed {max_cost_increase:.1%})"
            )
    elif max_cost_increase is not None and new_cost is None and old_cost is not None:
        regressions.append("no task succeeded: cost per successful task is unbounded")
    unsafe_rise = new["unsafe_attempts"] - old["unsafe_attempts"]
    notes.append(f"unsafe attempts {old['unsafe_attempts']} -> {new['unsafe_attempts']}")
    if max_unsafe_increase is not None and unsafe_rise > max_unsafe_increase:
        regressions.append(f"unsafe attempts rose by {unsafe_rise} (allowed {max_unsafe_increase})")
    old_tasks = _by_task(baseline)
    new_tasks = _by_task(report)
    changes = []
    for task_id in sorted(set(old_tasks) | set(new_tasks)):
        before, after = old_tasks.get(task_id), new_tasks.get(task_id)
        if before is True and after is False:
            changes.append(f"newly failing: {task_id}")
        elif before is False and after is True:
            changes.append(f"newly passing: {task_id}")
    return regressions, notes, changes


def results_of(report: dict[str, Any]) -> list[TaskResult]:
    """The report's trials as `TaskResult`s (unknown keys of other versions ignored)."""
    fields = {f.name for f in dataclasses.fields(TaskResult)}
    results = []
    for t in report["tasks"]:
        try:
            known = {k: v for k, v in t.items() if k in fields}
            results.append(TaskResult(**{"tags": [], "output": None, **known}))
        except TypeError as exc:
            raise SuiteError(f"a task of the report lacks what a trial needs: {exc}") from None
    return results


def _metrics_of(report: dict[str, Any], task_ids: set[str]) -> dict[str, Any]:
    return metrics([r for r in results_of(report) if r.task_id in task_ids])


def _by_task(report: dict[str, Any]) -> dict[str, bool]:
    """Each task's verdict (all its trials passed), over the trials that reached a model."""
    passed: dict[str, list[bool]] = {}
    for task in report.get("tasks", []):
        if task.get("model_unavailable") is True:
            continue
        passed.setdefault(task["task_id"], []).append(bool(task["passed"]))
    return {k: all(v) for k, v in passed.items()}
