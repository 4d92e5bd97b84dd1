"""The Autonomy page: per workflow of the policy in force, its stage (the store's latest
change, else the policy file's) and history, the preflight table with its evidence, and the
blast radius of one run at that stage. It reads only; promotions stay a command
(`opsgate autonomy promote`), where the evidence is computed and audited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opsgate.autonomy import Preflight, StageChange, current_stage, preflight, stage_history
from opsgate.policy import STAGES, BlastRadius, CompiledPolicy, blast_radius
from opsgate.store import Store

__all__ = ["WorkflowAutonomy", "autonomy_view", "blast_data"]


@dataclass(frozen=True, slots=True)
class WorkflowAutonomy:
    """What the page shows of one workflow."""

    workflow: str
    stage: str
    file_stage: str
    history: list[StageChange]
    preflight: Preflight
    blast: BlastRadius | None
    blast_error: str | None


def autonomy_view(
    policy: CompiledPolicy, store: Store, *, budgets: dict[str, float] | None = None
) -> list[WorkflowAutonomy]:
    """Each workflow's stage, preflight and blast radius, at the stage in force."""
    out = []
    for workflow in sorted(policy.document.workflows):
        stage = current_stage(store, policy, workflow)
        staged = policy.with_stage(workflow, next(s for s in STAGES if s == stage))
        table = preflight(staged, workflow, store, budget_usd=(budgets or {}).get(workflow))
        blast: BlastRadius | None = None
        error: str | None = None
        try:
            blast = blast_radius(staged, workflow)
        except Exception as exc:  # the page still shows the rest
            error = f"{type(exc).__name__}: {exc}"
        out.append(
            WorkflowAutonomy(
                workflow,
                stage,
                policy.stage(workflow),
                stage_history(store, workflow),
                table,
                blast,
                error,
            )
        )
    return out


def blast_data(blast: BlastRadius | None) -> dict[str, Any]:
    """The bound as plain data for the template (empty without one)."""
    return {} if blast is None else blast.as_dict()
