"""The budgets an operator set in the console, as the model router applies them.

The router file gives each workflow its ``max_cost_per_task``; an admin may override it in
the console (`workflow_budgets`, audited there). `StoreBudgets` reads the override for the
router's run meter: a run started after the change is capped by it. Read through a short
cache (a run makes several model calls; one query per workflow per few seconds at most),
and a store that cannot be read leaves the file's budget in force rather than none.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from opsgate.store import Store, workflow_budgets

__all__ = ["StoreBudgets"]


class StoreBudgets:
    """Per-workflow ``max_cost_per_task`` overrides kept in the store (None: none set)."""

    def __init__(self, store: Store, *, ttl_s: float = 5.0) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, float | None]] = {}

    def max_cost_per_task(self, workflow: str) -> float | None:
        """The override in force for ``workflow``, or None (the router file's applies)."""
        now = time.monotonic()
        with self._lock:
            found = self._cache.get(workflow)
        if found is not None and now - found[0] < self._ttl_s:
            return found[1]
        try:
            with self._store.engine.connect() as conn:
                value = conn.execute(
                    select(workflow_budgets.c.max_cost_per_task).where(
                        workflow_budgets.c.workflow == workflow
                    )
                ).scalar()
        except SQLAlchemyError:
            return None if found is None else found[1]
        override = None if value is None else float(value)
        with self._lock:
            self._cache[workflow] = (now, override)
        return override
