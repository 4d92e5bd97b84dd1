"""Workflow budgets in force: an admin's override from the console (`workflow_budgets`,
per field) else the router file's (`opsgate serve --router`). Setting and clearing an
override is audited (``budget_set`` / ``budget_cleared``, with the token's name) before the
row changes, as a stage change is.

The pages show these budgets; a model router made with the store applies both to production
runs (`opsgate.cost.StoreBudgets`): the per-task one to each run, the daily one to the
workflow's spend today.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, select

from opsgate.models import RouterConfig
from opsgate.recorder import Event, EventType, Recorder
from opsgate.server._console import ConsoleError
from opsgate.store import Store, workflow_budgets

__all__ = ["BudgetInForce", "budgets_in_force", "clear_budget", "set_budget"]

_WORKFLOW_MAX = 128
#: Above this a "budget" is a typing mistake, not a limit (USD).
_LIMIT_MAX = 1e9


@dataclass(frozen=True, slots=True)
class BudgetInForce:
    """A workflow's budget as it applies now.

    Attributes:
        max_source / daily_source: ``console`` (an override), ``router file`` or ``""``
            (no such limit).
        file_max_cost_per_task / file_daily_spend: What the router file says (for the form).
        set_by / set_at: Who set the override, and when (None: no override).
    """

    workflow: str
    max_cost_per_task: float | None
    max_source: str
    daily_spend: float | None
    daily_source: str
    file_max_cost_per_task: float | None
    file_daily_spend: float | None
    set_by: str | None
    set_at: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API."""
        return asdict(self)


def _pick(override: float | None, file: float | None) -> tuple[float | None, str]:
    if override is not None:
        return override, "console"
    return (file, "router file") if file is not None else (None, "")


def budgets_in_force(store: Store, router: RouterConfig | None) -> dict[str, BudgetInForce]:
    """Every workflow with a budget in the router file or an override, by name."""
    with store.engine.connect() as conn:
        rows = {r.workflow: r for r in conn.execute(select(workflow_budgets))}
    files = router.budgets if router is not None else {}
    out = {}
    for name in sorted(set(rows) | set(files)):
        row, file = rows.get(name), files.get(name)
        file_max = file.max_cost_per_task if file else None
        file_daily = file.daily_spend if file else None
        per_task, max_source = _pick(row.max_cost_per_task if row else None, file_max)
        daily, daily_source = _pick(row.daily_spend if row else None, file_daily)
        out[name] = BudgetInForce(
            workflow=name,
            max_cost_per_task=per_task,
            max_source=max_source,
            daily_spend=daily,
            daily_source=daily_source,
            file_max_cost_per_task=file_max,
            file_daily_spend=file_daily,
            set_by=row.set_by if row else None,
            set_at=row.set_at if row else None,
        )
    return out


def check_workflow(workflow: str) -> str:
    """The workflow's name, stripped (a 400 when it cannot be one)."""
    name = workflow.strip()
    if not name or len(name) > _WORKFLOW_MAX or not name.isprintable():
        raise ConsoleError(
            400,
            f"a workflow's name is printable text of 1 to {_WORKFLOW_MAX} characters, "
            f"not `{workflow}`",
        )
    return name


def _check_limit(what: str, value: float | None) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0 or value > _LIMIT_MAX:
        raise ConsoleError(400, f"{what} is a positive amount of USD, not `{value}`")
    return float(value)


def _audit(recorder: Recorder, kind: EventType, at: float, data: dict[str, Any]) -> None:
    recorder.record(Event(kind, f"budget-{uuid.uuid4().hex}", 0, at, data))


def set_budget(
    store: Store,
    recorder: Recorder,
    workflow: str,
    *,
    max_cost_per_task: float | None,
    daily_spend: float | None,
    actor: str,
) -> None:
    """Override ``workflow``'s budget (a None field keeps the router file's), as ``actor``.

    Raises:
        ConsoleError: 400, a bad name, a limit that is not a positive amount, or neither limit.
        StoreError: the audit event could not be written (nothing was changed).
    """
    name = check_workflow(workflow)
    per_task = _check_limit("max cost per task", max_cost_per_task)
    daily = _check_limit("daily spend", daily_spend)
    if per_task is None and daily is None:
        raise ConsoleError(
            400, "give a max cost per task, a daily spend or both (or clear the override)"
        )
    at = time.time()
    data = {
        "actor": actor[:256],
        "workflow": name,
        "max_cost_per_task": per_task,
        "daily_spend": daily,
    }
    _audit(recorder, EventType.BUDGET_SET, at, data)
    values = {
        "max_cost_per_task": per_task,
        "daily_spend": daily,
        "set_by": actor[:256],
        "set_at": at,
    }
    with store.engine.begin() as conn:
        conn.execute(delete(workflow_budgets).where(workflow_budgets.c.workflow == name))
        conn.execute(workflow_budgets.insert().values(workflow=name, **values))


def clear_budget(store: Store, recorder: Recorder, workflow: str, *, actor: str) -> bool:
    """Drop ``workflow``'s override (the router file's budget applies again); False when it
    had none (then nothing is audited)."""
    name = check_workflow(workflow)
    with store.engine.connect() as conn:
        found = conn.execute(
            select(workflow_budgets.c.workflow).where(workflow_budgets.c.workflow == name)
        ).first()
    if found is None:
        return False
    _audit(
        recorder, EventType.BUDGET_CLEARED, time.time(), {"actor": actor[:256], "workflow": name}
    )
    with store.engine.begin() as conn:
        conn.execute(delete(workflow_budgets).where(workflow_budgets.c.workflow == name))
    return True
