"""The cost ledger: what each run, workflow, day and model cost, and how that drifts.

- `CostRecorder`: the gateway's `Recorder` that writes one ``cost_entries`` row per model
  call and per tool call, batched on a background thread; it never raises and never
  makes a run wait (failures are counted).
- `StoreBudgets`: the console's per-workflow budget overrides, as the router's run meter
  applies them (`ModelRouter(budgets=StoreBudgets(store))`).
- `CostLedger`: the roll-ups (`run_cost`, `by_workflow`, `by_day`, `by_model`,
  `daily_spend`) and `drift` (success rate and cost per successful task, this week
  against the last), as plain dataclasses.
"""

from opsgate.cost._budgets import StoreBudgets
from opsgate.cost._ledger import (
    CostLedger,
    DayCost,
    Drift,
    DriftAlert,
    ModelCost,
    RunCost,
    WorkflowCost,
)
from opsgate.cost._recorder import CostRecorder

__all__ = [
    "CostLedger",
    "CostRecorder",
    "DayCost",
    "Drift",
    "DriftAlert",
    "ModelCost",
    "RunCost",
    "StoreBudgets",
    "WorkflowCost",
]
