"""The Cost page: spend per UTC day, per workflow and per model over a window, from
`opsgate.cost.CostLedger` (production runs unless eval trials are asked for)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from opsgate.cost import CostLedger, DayCost, ModelCost, WorkflowCost
from opsgate.store import Store

__all__ = ["CostView", "cost_view"]

_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class CostView:
    """What the Cost page shows."""

    days: list[DayCost]
    workflows: list[WorkflowCost]
    models: list[ModelCost]
    total_usd: float

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API (days as ISO dates)."""
        return {
            "days": [{**asdict(d), "day": d.day.isoformat()} for d in self.days],
            "workflows": [asdict(w) for w in self.workflows],
            "models": [asdict(m) for m in self.models],
            "total_usd": self.total_usd,
        }


def cost_view(store: Store, *, days: int, workflow: str | None, include_eval: bool) -> CostView:
    """The last ``days`` UTC days (today included), of one workflow or all."""
    ledger = CostLedger(store)
    now = time.time()
    since = now - (now % _DAY) - (days - 1) * _DAY
    per_day = ledger.by_day(workflow, days, now, include_eval=include_eval)
    workflows = [
        w
        for w in ledger.by_workflow(since, now, include_eval=include_eval)
        if workflow is None or w.workflow == workflow
    ]
    models = ledger.by_model(since, now, include_eval=include_eval) if workflow is None else []
    return CostView(per_day, workflows, models, sum(d.cost_usd for d in per_day))
