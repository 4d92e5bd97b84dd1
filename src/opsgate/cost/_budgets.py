"""The budgets an operator set in the console, as the model router applies them.

The router file gives each workflow its ``max_cost_per_task`` and ``daily_spend``; an admin
may override either in the console (`workflow_budgets`, audited there). `StoreBudgets`
reads the overrides for the router's run meter, and what the workflow's production runs
have spent today (the cost ledger), so that a run started after a change is capped by it
and a workflow whose day is spent stops calling models. Read through a short cache (a run
makes several model calls; one query per workflow per few seconds at most), and a store
that cannot be read leaves the last known value in force (the file's, when none is known)
rather than none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from opsgate.cost._ledger import CostLedger
from opsgate.store import Store, workflow_budgets

__all__ = ["StoreBudgets"]

T = TypeVar("T")


class StoreBudgets:
    """Per-workflow budget overrides kept in the store (None: none set), and today's
    production spend from the cost ledger."""

    def __init__(self, store: Store, *, ttl_s: float = 5.0) -> None:
        self._store = store
        self._ledger = CostLedger(store)
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, object]] = {}

    def _cached(self, kind: str, workflow: str, read: Callable[[], T]) -> T | None:
        now = time.monotonic()
        with self._lock:
            found = self._cache.get((kind, workflow))
        if found is not None and now - found[0] < self._ttl_s:
            return found[1]  # type: ignore[return-value]
        try:
            value = read()
        except SQLAlchemyError:
            return None if found is None else found[1]  # type: ignore[return-value]
        with self._lock:
            self._cache[(kind, workflow)] = (now, value)
        return value

    def _override(self, column: str, workflow: str) -> float | None:
        def read() -> float | None:
            with self._store.engine.connect() as conn:
                value = conn.execute(
                    select(workflow_budgets.c[column]).where(
                        workflow_budgets.c.workflow == workflow
                    )
                ).scalar()
            return None if value is None else float(value)

        return self._cached(column, workflow, read)

    def max_cost_per_task(self, workflow: str) -> float | None:
        """The override in force for ``workflow``, or None (the router file's applies)."""
        return self._override("max_cost_per_task", workflow)

    def daily_spend(self, workflow: str) -> float | None:
        """The daily budget override for ``workflow``, or None (the router file's applies)."""
        return self._override("daily_spend", workflow)

    def spent_today(self, workflow: str) -> float | None:
        """What ``workflow``'s production runs have spent this UTC day (None: the ledger
        cannot be read and nothing is known)."""
        return self._cached("spent", workflow, lambda: self._ledger.daily_spend(workflow))
