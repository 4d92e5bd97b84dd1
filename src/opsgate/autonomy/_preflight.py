"""The seed's preflight table for one workflow: go / no-go per row, with its evidence.

A workflow is ready for more autonomy only when every row holds: its cost per successful
task has a budget and is tracked without drift; its task success is high and stable, in the
latest eval reports and in production; approvals guard its high-impact writes; its tools
are least-privilege (no generic shell or network tool, separate read and write secrets);
its loop, retry and cost caps are set (a cap hit escalates the run, its progress kept).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from opsgate.alerts import list_rules
from opsgate.contracts import ToolContract
from opsgate.cost import CostLedger, WorkflowCost
from opsgate.evals import EvalStore
from opsgate.policy import STAGE_SCOPES, CompiledPolicy, ToolPolicy
from opsgate.store import Store

__all__ = ["GENERIC_TOOL", "Preflight", "PreflightRow", "preflight", "wilson_interval"]

#: A tool name or description that says "any command" or "any URL": not least privilege.
GENERIC_TOOL = re.compile(
    r"\b(shell|bash|exec(ute)?_(command|code)|run_(command|shell|code)|subprocess|eval_code"
    r"|http_request|fetch_url|any url|arbitrary (url|command|code))\b",
    re.IGNORECASE,
)

_CAPS = ("max_steps", "max_tool_calls", "max_identical_calls", "max_retries", "max_cost_usd")


@dataclass(frozen=True, slots=True)
class PreflightRow:
    """One row: what is checked, whether it holds, and the evidence."""

    check: str
    go: bool
    evidence: str


@dataclass(frozen=True, slots=True)
class Preflight:
    """The table for one workflow."""

    workflow: str
    stage: str
    policy_version: str
    rows: list[PreflightRow] = field(default_factory=list)

    @property
    def go(self) -> bool:
        """Every row holds."""
        return all(r.go for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        """JSON data, for CI."""
        return {
            "workflow": self.workflow,
            "stage": self.stage,
            "policy_version": self.policy_version,
            "go": self.go,
            "rows": [asdict(r) for r in self.rows],
        }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def preflight(
    policy: CompiledPolicy,
    workflow: str,
    store: Store | None,
    *,
    budget_usd: float | None = None,
    suites: Sequence[str] = (),
    min_success: float = 0.8,
    reports: int = 3,
    window_days: int = 7,
    now: float | None = None,
) -> Preflight:
    """The preflight table of ``workflow`` under ``policy``.

    Args:
        policy: The policy in force (its stage, tools, approvals and caps).
        workflow: The workflow.
        store: The opsgate database (cost ledger, eval reports); None: nothing recorded.
        budget_usd: The max cost per successful task (the router file's budget).
        suites: The eval suites of the workflow (their latest reports are the evidence).
        min_success: The success rate each report and production must reach.
        reports: How many of the latest reports of each suite must hold.
        window_days: The production window, in days.
        now: The end of the window (default: now).

    Raises:
        PolicyError: the policy has no such workflow.
    """
    stage = policy.stage(workflow)
    end = time.time() if now is None else now
    spend = _spend(store, workflow, end, window_days)
    rows = [
        _budget_row(spend, budget_usd, window_days),
        _drift_row(store, workflow, end, window_days),
        _evals_row(store, suites, min_success, reports),
        _production_row(spend, min_success, window_days),
        _approvals_row(policy, workflow),
        _privilege_row(policy, workflow),
        _caps_row(policy, workflow),
    ]
    return Preflight(workflow, stage, policy.version, rows)


def _spend(store: Store | None, workflow: str, end: float, days: int) -> WorkflowCost | None:
    if store is None:
        return None
    found = CostLedger(store).by_workflow(end - days * 86400.0, end)
    return next((w for w in found if w.workflow == workflow), None)


def _budget_row(spend: WorkflowCost | None, budget: float | None, days: int) -> PreflightRow:
    check = "cost per successful task has a budget and is tracked"
    if budget is None:
        return PreflightRow(check, False, "no budget: set max_cost_per_task in the router file")
    if spend is None or spend.cost_per_success is None:
        return PreflightRow(
            check, False, f"budget ${budget:g}, but no successful production run in {days}d"
        )
    within = spend.cost_per_success <= budget
    return PreflightRow(
        check,
        within,
        f"${spend.cost_per_success:.4f} per successful task over {spend.successful_runs} "
        f"successes in {days}d, budget ${budget:g}" + ("" if within else ": over budget"),
    )


#: The alert kinds that watch a workflow's drift (one must be on for the drift row).
DRIFT_ALERTS = ("cost_per_success_drift", "success_rate_drop")


def _drift_row(store: Store | None, workflow: str, end: float, days: int) -> PreflightRow:
    check = "a drift alert is on, and success and cost per success hold week over week"
    if store is None:
        return PreflightRow(check, False, "no database: nothing is tracked")
    watching = [
        r.kind for r in list_rules(store, workflow=workflow) if r.enabled and r.kind in DRIFT_ALERTS
    ]
    if not watching:
        return PreflightRow(
            check,
            False,
            "no drift alert: `opsgate alerts add "
            f"{workflow} --kind cost_per_success_drift --threshold 0.25 ...`",
        )
    drift = CostLedger(store).drift(workflow, end, window_days=days)
    if drift.current.ended_runs == 0 or drift.previous.ended_runs == 0:
        return PreflightRow(
            check, False, f"not enough history: two {days}d windows with ended runs are needed"
        )
    if drift.alerts:
        return PreflightRow(check, False, "; ".join(a.message for a in drift.alerts))
    return PreflightRow(
        check,
        True,
        f"alerts on: {', '.join(sorted(set(watching)))}; "
        f"success {drift.success_rate_change:+.1f} points, cost per success "
        + (
            "n/a"
            if drift.cost_per_success_change is None
            else f"{drift.cost_per_success_change:+.0%}"
        ),
    )


def _evals_row(
    store: Store | None, suites: Sequence[str], min_success: float, count: int
) -> PreflightRow:
    check = f"the latest {count} eval reports of each suite pass, success ≥ {min_success:.0%}"
    if not suites:
        return PreflightRow(check, False, "no suite named for the workflow (--suite)")
    if store is None:
        return PreflightRow(check, False, "no database: no report")
    problems, seen = [], []
    evals = EvalStore(store)
    for suite in suites:
        latest = evals.list_reports(suite, limit=count)
        if len(latest) < count:
            problems.append(f"{suite}: {len(latest)} report(s), {count} needed")
            continue
        for r in latest:
            rate = r["success_rate"]
            seen.append(f"{suite} {r['report_id'][:8]}: {rate:.0%}")
            if not r["gate_passed"] or rate is None or rate < min_success:
                problems.append(
                    f"{suite} {r['report_id'][:8]}: success {rate:.0%}, gate "
                    f"{'passed' if r['gate_passed'] else 'failed'}"
                )
    if problems:
        return PreflightRow(check, False, "; ".join(problems))
    return PreflightRow(check, True, ", ".join(seen))


def _production_row(spend: WorkflowCost | None, min_success: float, days: int) -> PreflightRow:
    check = f"production success ≥ {min_success:.0%} (95% interval's low end)"
    if spend is None or spend.ended_runs == 0:
        return PreflightRow(check, False, f"no ended production run in {days}d")
    low, high = wilson_interval(spend.successful_runs, spend.ended_runs)
    rate = spend.successful_runs / spend.ended_runs
    return PreflightRow(
        check,
        low >= min_success,
        f"{rate:.0%} of {spend.ended_runs} runs in {days}d (95% interval {low:.0%}–{high:.0%})",
    )


def _contracts(policy: CompiledPolicy, workflow: str) -> list[ToolContract]:
    return [policy.toolbelt.get(name) for name in policy.allowed_tools(workflow)]


def _approvals_row(policy: CompiledPolicy, workflow: str) -> PreflightRow:
    check = "approvals guard financial, identity and production writes (high impact)"
    stage = policy.stage(workflow)
    if "write" not in STAGE_SCOPES[stage]:
        return PreflightRow(check, True, f"stage {stage}: no write runs")
    specs = policy.document.workflows[workflow].tools
    unguarded = []
    for contract in _contracts(policy, workflow):
        if contract.scope != "write" or contract.impact != "high":
            continue
        spec = specs.get(contract.name) or ToolPolicy()
        if stage != "write_with_approval" and spec.approval == "never":
            unguarded.append(contract.name)
    if unguarded:
        return PreflightRow(
            check, False, "high-impact writes without approval: " + ", ".join(unguarded)
        )
    return PreflightRow(check, True, "every high-impact write needs a person (or a rule)")


def _privilege_row(policy: CompiledPolicy, workflow: str) -> PreflightRow:
    check = "least privilege: no generic shell or network tool; read and write secrets apart"
    contracts = _contracts(policy, workflow)
    generic = [c.name for c in contracts if GENERIC_TOOL.search(f"{c.name} {c.description}")]
    reads = _secrets(c for c in contracts if c.scope == "read")
    shared = sorted(reads & _secrets(c for c in contracts if c.scope != "read"))
    problems = []
    if generic:
        problems.append("generic tools: " + ", ".join(generic))
    if shared:
        problems.append("secrets shared by read and write tools: " + ", ".join(shared))
    if problems:
        return PreflightRow(check, False, "; ".join(problems))
    return PreflightRow(check, True, f"{len(contracts)} tools, each for one job")


def _secrets(contracts: Iterable[ToolContract]) -> set[str]:
    return {s for c in contracts for s in c.secrets}


def _caps_row(policy: CompiledPolicy, workflow: str) -> PreflightRow:
    check = "loop, retry and cost caps are set (a cap hit escalates, progress kept)"
    caps = policy.caps(workflow)
    missing = [name for name in _CAPS if getattr(caps, name) is None]
    if missing:
        return PreflightRow(check, False, "not set: " + ", ".join(missing))
    return PreflightRow(check, True, ", ".join(f"{n}={getattr(caps, n):g}" for n in _CAPS))
