"""`evaluate`: run a suite against a router and build its report, the API `agent-eval run`
is a thin command over.

Every task is a real run through the gateway, recorded in the store (audit trail, traces,
cost ledger) as an eval trial; the report carries the metrics and the gate's verdict on the
thresholds. Writing the report's files, saving it and choosing the exit code are the
caller's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opsgate.errors import SuiteError
from opsgate.evals._report import build_report, check_rate
from opsgate.evals._runner import Harness, TaskResult, run_suite, select_tasks
from opsgate.evals._suite import Suite, Task
from opsgate.models import RouterConfig
from opsgate.store import Store
from opsgate.wiring import model_router, store_recorders

__all__ = ["Evaluation", "evaluate"]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A finished evaluation: the report document, and what the recorders could not
    complete (a non-empty list means the record of the run is incomplete)."""

    report: dict[str, Any]
    record_problems: list[str] = field(default_factory=list)


def evaluate(
    suite: Suite,
    router: RouterConfig,
    store: Store,
    *,
    tasks: Sequence[Task] | None = None,
    trials: int = 1,
    concurrency: int = 1,
    timeout_s: float = 600.0,
    max_cost_per_task: float | None = None,
    min_success_rate: float | None = None,
    router_name: str = "",
    shard: str | None = None,
    on_done: Callable[[TaskResult], None] | None = None,
) -> Evaluation:
    """Run ``tasks`` (default: every task of ``suite``) ``trials`` times each and report.

    Args:
        suite: The loaded suite (`load_suite`).
        router: The router configuration (`opsgate.models.load_router_config`); the
            embedded model is started for the run when it names it.
        store: Where the runs are recorded.
        tasks: A selection of the suite's tasks (`select_tasks`: tags, ids, a shard).
        router_name: How the report names the router (its file, usually).
        shard: ``"i/n"`` when ``tasks`` is a CI job's share.
        on_done: Called after each finished trial (progress).

    Raises:
        SuiteError: no task to run, a threshold out of range, a suite that cannot load.
        ConfigError: the embedded model cannot start.
    """
    check_rate("min_success_rate", min_success_rate)
    harness = Harness.load(suite)
    chosen = list(select_tasks(suite) if tasks is None else tasks)
    if not chosen:
        raise SuiteError("no task matches the filters")
    recorders = store_recorders(store, durable="write_ahead", checkpoint_on_run_end=False)
    started = time.time()

    async def run_all() -> list[TaskResult]:
        with model_router(router) as live:
            return await run_suite(
                harness,
                chosen,
                live,
                trials=trials,
                concurrency=concurrency,
                timeout_s=timeout_s,
                recorders=recorders.all,
                on_done=on_done,
            )

    try:
        results = asyncio.run(run_all())
    finally:
        problems = recorders.close()
    report = build_report(
        suite.suite,
        suite.version,
        results,
        trials=trials,
        model_router=router_name,
        started_at=started,
        ended_at=time.time(),
        thresholds={"max_cost_per_task": max_cost_per_task, "min_success_rate": min_success_rate},
        shard=shard,
        suite_tasks=len(suite.tasks),
    )
    return Evaluation(report, problems)
