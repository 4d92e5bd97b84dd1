"""Merging the reports of CI shards (``agent-eval run --shard i/n``) into one report.

Metrics are never averaged across shards (a mean of success rates weighs a small shard
like a large one, and percentiles do not average at all): they are recomputed from every
trial, so the merged report is the report one unsharded run of the same trials would give.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from opsgate.errors import SuiteError
from opsgate.evals._report import REPORT_SCHEMA, metrics, thresholds_failures
from opsgate.evals._result import TaskResult

__all__ = ["merge_reports"]

#: Keys every shard must agree on: a merge of different runs would be meaningless.
_SAME = (
    ("schema_version", "report schema versions"),
    ("suite", "suites"),
    ("suite_version", "suite versions"),
    ("trials", "trial counts"),
    ("model_router", "model routers"),
    ("thresholds", "thresholds"),
)

_FIELDS = {f.name for f in dataclasses.fields(TaskResult)}
_REQUIRED = {
    f.name
    for f in dataclasses.fields(TaskResult)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
}
_NUMBER = (int, float)
#: The types of the fields ``metrics`` reads; a wrong one would crash it, so say which.
_TYPES: dict[str, tuple[type, ...]] = {
    "task_id": (str,),
    "trial": (int,),
    "passed": (bool,),
    "failures": (list,),
    "tool_precision": _NUMBER,
    "tool_recall": _NUMBER,
    "escalation_correct": (bool,),
    "unsafe_attempts": (int,),
    "cost_usd": _NUMBER,
    "estimate": (bool,),
    "latency_s": _NUMBER,
    "first_output_s": (*_NUMBER, type(None)),
    "model_calls": (int,),
    "error": (str, type(None)),
    "plan_score": (*_NUMBER, type(None)),
    "schema_checked": (int,),
    "schema_valid": (int,),
    "judge": (dict, type(None)),
    "judge_cost_usd": _NUMBER,
}


@dataclasses.dataclass
class _Shard:
    index: int
    count: int
    document: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


def _shard(position: int, document: Any) -> _Shard:
    if not isinstance(document, dict) or "metrics" not in document:
        raise SuiteError(f"report #{position + 1} is not an agent-eval report")
    text = document.get("shard")
    report = document.get("report_id", f"#{position + 1}")
    if not isinstance(text, str):
        raise SuiteError(
            f"report {report} is not a shard (no `shard`): merge the reports of "
            "`agent-eval run --shard i/n`"
        )
    try:
        index, count = (int(p) for p in text.split("/"))
    except ValueError:
        raise SuiteError(f"report {report} has shard `{text}`, not i/n") from None
    if not 1 <= index <= count:
        raise SuiteError(f"report {report} has shard `{text}`: i must be between 1 and n")
    for key in ("tasks", "started_at", "ended_at"):
        if key not in document:
            raise SuiteError(f"shard {text} (report {report}) has no `{key}`")
    if not isinstance(document["tasks"], list):
        raise SuiteError(f"shard {text}: `tasks` is not a list")
    for key in ("started_at", "ended_at"):
        value = document[key]
        if not isinstance(value, _NUMBER) or isinstance(value, bool):
            raise SuiteError(f"shard {text}: `{key}` is not a time in seconds")
    return _Shard(index, count, document)


def _result(shard: _Shard, position: int, task: Any) -> TaskResult:
    """A task entry as the `TaskResult` it was written from (keys it does not know ignored)."""
    where = f"shard {shard.label}, task #{position + 1}"
    if not isinstance(task, dict):
        raise SuiteError(f"{where} is not a task result")
    missing = sorted(_REQUIRED - task.keys())
    if missing:
        raise SuiteError(f"{where} lacks {', '.join(f'`{k}`' for k in missing)}")
    for key, types in _TYPES.items():
        value = task.get(key)
        bad_bool = isinstance(value, bool) and bool not in types
        if key in task and (not isinstance(value, types) or bad_bool):
            raise SuiteError(
                f"{where} (`{task.get('task_id')}`): `{key}` has the wrong type "
                f"({type(value).__name__})"
            )
    return TaskResult(**{k: v for k, v in task.items() if k in _FIELDS})


def _agree(shards: list[_Shard]) -> None:
    for key, what in _SAME:
        values = [s.document.get(key) for s in shards]
        if any(v != values[0] for v in values[1:]):
            listed = ", ".join(
                f"{v!r} (shard {s.label})" for s, v in zip(shards, values, strict=True)
            )
            raise SuiteError(f"cannot merge reports of different {what}: {listed}")
    counts = sorted({s.count for s in shards})
    if len(counts) > 1:
        listed = ", ".join(s.label for s in shards)
        raise SuiteError(f"cannot merge shards of different splits: {listed}")


def merge_reports(
    documents: list[dict[str, Any]], *, allow_partial: bool = False
) -> dict[str, Any]:
    """One report from the reports of the shards of one run.

    Refuses shards of different suites, suite versions, trial counts, schema versions,
    model routers or thresholds, a shard given twice, a trial present in two shards, and
    (unless ``allow_partial``) a set of shards that does not cover 1..n. A partial merge
    lists the shards it lacks in ``missing_shards``.
    """
    if not documents:
        raise SuiteError("no shard reports to merge")
    shards = [_shard(n, d) for n, d in enumerate(documents)]
    _agree(shards)
    version = shards[0].document["schema_version"]
    if version != REPORT_SCHEMA:
        raise SuiteError(
            f"the shards have report schema `{version}`; this agent-eval merges "
            f"schema {REPORT_SCHEMA}"
        )
    seen: dict[int, _Shard] = {}
    for shard in shards:
        if shard.index in seen:
            first = seen[shard.index].document.get("report_id")
            raise SuiteError(
                f"shard {shard.label} is given twice (reports {first} and "
                f"{shard.document.get('report_id')})"
            )
        seen[shard.index] = shard
    count = shards[0].count
    missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in seen]
    if missing and not allow_partial:
        raise SuiteError(
            f"shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"{'are' if len(missing) > 1 else 'is'} missing (got "
            f"{', '.join(seen[i].label for i in sorted(seen))}); --allow-partial merges anyway"
        )
    shards.sort(key=lambda s: s.index)
    tasks: list[dict[str, Any]] = []
    results: list[TaskResult] = []
    owner: dict[tuple[str, int], str] = {}
    for shard in shards:
        for position, task in enumerate(shard.document["tasks"]):
            result = _result(shard, position, task)
            key = (result.task_id, result.trial)
            if key in owner:
                raise SuiteError(
                    f"task `{result.task_id}` trial {result.trial} is in both shard "
                    f"{owner[key]} and shard {shard.label}"
                )
            owner[key] = shard.label
            results.append(result)
            tasks.append(task)
    computed = metrics(results)
    thresholds = shards[0].document["thresholds"]
    if not isinstance(thresholds, dict):
        raise SuiteError("the shards' `thresholds` is not a mapping")
    try:
        failures = thresholds_failures(computed, **thresholds)
    except TypeError:
        raise SuiteError(
            f"the shards' thresholds {sorted(thresholds)} are not all known to this agent-eval"
        ) from None
    first = shards[0].document
    return {
        "schema_version": version,
        "report_id": uuid.uuid4().hex,
        "suite": first["suite"],
        "suite_version": first["suite_version"],
        "model_router": first["model_router"],
        "trials": first["trials"],
        "shard": None,
        "suite_tasks": first.get("suite_tasks"),
        "merged_from": [s.document.get("report_id") for s in shards],
        "missing_shards": missing,
        "started_at": min(s.document["started_at"] for s in shards),
        "ended_at": max(s.document["ended_at"] for s in shards),
        "metrics": computed,
        "thresholds": thresholds,
        "gate": {"failures": failures},
        "tasks": tasks,
    }
