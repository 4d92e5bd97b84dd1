"""Where a gateway learns a workflow's autonomy stage when it is kept in the store (promoted
or demoted with `opsgate autonomy`) rather than only in the policy file.

The gate reads the stage in force on every call: `StoreStageSource` polls the store on a
thread of its own (a dictionary look-up on the call's path), and the gateway decides under
the policy compiled at that stage (`CompiledPolicy.with_stage`, compiled once per stage).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sqlalchemy import func, select

from opsgate.gateway._polling import Poller
from opsgate.store import Store, workflow_stages

__all__ = ["StageSource", "StoreStageSource"]


@runtime_checkable
class StageSource(Protocol):
    """The autonomy stage in force for a workflow, when something other than the policy
    file sets it."""

    def stage(self, workflow: str) -> str | None:
        """The stage set for ``workflow`` (None: the policy file's)."""
        ...


class StoreStageSource:
    """The latest stage of each workflow in the store's ``workflow_stages``, polled."""

    def __init__(self, store: Store, *, poll_s: float = 1.0) -> None:
        self._engine = store.engine
        self._stages: dict[str, str] = {}
        self._poller = Poller(self._read, poll_s=poll_s, name="opsgate-stages")

    def stage(self, workflow: str) -> str | None:
        """The stage set for ``workflow`` as of the last poll."""
        return self._stages.get(workflow)

    def refresh(self) -> None:
        """Read now (after a change made by this process)."""
        self._poller.refresh()

    def _read(self) -> None:
        latest = (
            select(workflow_stages.c.workflow, func.max(workflow_stages.c.id).label("id"))
            .group_by(workflow_stages.c.workflow)
            .subquery()
        )
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(workflow_stages.c.workflow, workflow_stages.c.stage).join(
                    latest, workflow_stages.c.id == latest.c.id
                )
            ).all()
        self._stages = {str(w): str(s) for w, s in rows}

    def close(self) -> None:
        """Stop polling."""
        self._poller.close()
