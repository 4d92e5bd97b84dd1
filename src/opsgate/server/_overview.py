"""The Overview: per workflow, how it goes (success rate), what a success costs against its
budget, what was spent today against the daily budget, and who is waiting for a person.

Outcomes and spend come from `opsgate.cost.CostLedger`; budgets are those in force
(`budgets_in_force`: an admin's override, else the router file's), with where each came from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from opsgate.cost import CostLedger
from opsgate.gateway import DurableApprovalQueue
from opsgate.server._budgets import BudgetInForce
from opsgate.store import Store

__all__ = ["WorkflowHealth", "overview"]

_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class WorkflowHealth:
    """One workflow over the window.

    Attributes:
        over_cost_budget: The cost per successful task is above the budget's
            ``max_cost_per_task`` (None: no budget or no success to measure).
        over_daily_budget: Today's spend is above ``daily_spend`` (None: no budget).
        cost_budget_source / daily_budget_source: ``console``, ``router file`` or ``""``.
    """

    workflow: str
    runs: int
    ended_runs: int
    success_rate: float | None
    cost_usd: float
    cost_per_success: float | None
    max_cost_per_task: float | None
    spend_today: float
    daily_budget: float | None
    pending_approvals: int
    estimate: bool
    over_cost_budget: bool | None
    over_daily_budget: bool | None
    cost_budget_source: str = ""
    daily_budget_source: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API."""
        return asdict(self)


def overview(
    store: Store,
    *,
    days: int,
    budgets: Mapping[str, BudgetInForce],
    now: float | None = None,
) -> list[WorkflowHealth]:
    """Every workflow with runs in the last ``days`` days, spend today, a pending request or
    a budget; busiest first."""
    now = time.time() if now is None else now
    ledger = CostLedger(store)
    window = {w.workflow: w for w in ledger.by_workflow(now - days * _DAY, now)}
    today_start = now - (now % _DAY)
    today = {w.workflow: w.cost_usd for w in ledger.by_workflow(today_start, now)}
    pending: dict[str, int] = {}
    for record in DurableApprovalQueue(store).list("pending"):
        pending[record.workflow] = pending.get(record.workflow, 0) + 1
    names = set(window) | set(today) | set(pending) | set(budgets)
    out = []
    for name in names:
        w = window.get(name)
        budget = budgets.get(name)
        per_task = budget.max_cost_per_task if budget else None
        daily = budget.daily_spend if budget else None
        cost_per_success = w.cost_per_success if w else None
        spent = today.get(name, 0.0)
        out.append(
            WorkflowHealth(
                workflow=name,
                runs=w.runs if w else 0,
                ended_runs=w.ended_runs if w else 0,
                success_rate=w.success_rate if w else None,
                cost_usd=w.cost_usd if w else 0.0,
                cost_per_success=cost_per_success,
                max_cost_per_task=per_task,
                spend_today=spent,
                daily_budget=daily,
                pending_approvals=pending.get(name, 0),
                estimate=bool(w and w.estimate),
                over_cost_budget=(
                    None
                    if per_task is None or cost_per_success is None
                    else cost_per_success > per_task
                ),
                over_daily_budget=None if daily is None else spent > daily,
                cost_budget_source=budget.max_source if budget else "",
                daily_budget_source=budget.daily_source if budget else "",
            )
        )
    return sorted(out, key=lambda h: (-h.runs, h.workflow))
