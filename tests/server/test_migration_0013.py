"""Migration 0013 (`workflow_budgets`, the console's budget overrides): a database at 0012
is upgraded with its data kept, overrides are one row per workflow, and it rolls back to
0012 and forward again; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from opsgate.store import SCHEMA_VERSION, open_store
from tests.alerts.test_migration_0011 import make_engine
from tests.store.test_migration_0005 import _migrate, _revision

_OVERRIDE = (
    "INSERT INTO workflow_budgets (workflow, max_cost_per_task, daily_spend, set_by, set_at) "
    "VALUES ('wf', NULL, 5.0, 'ann', 1)"
)


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0013_upgrades_0012_keeps_data_and_rolls_back(db_url: str) -> None:
    assert SCHEMA_VERSION >= "0013"
    _migrate(db_url, "0012")
    assert "workflow_budgets" not in _tables(db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO run_stops (run_id, actor, reason, requested_at) "
                "VALUES ('r', 'ann', '', 0)"
            )
        )
    engine.dispose()
    with open_store(db_url) as store, store.engine.begin() as conn:  # opening upgrades it
        assert conn.execute(text("SELECT actor FROM run_stops")).scalar_one() == "ann"
        conn.execute(text(_OVERRIDE))
    assert _revision(db_url) == SCHEMA_VERSION
    engine = make_engine(db_url)
    with pytest.raises(IntegrityError), engine.begin() as conn:  # one override per workflow
        conn.execute(text(_OVERRIDE))
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT max_cost_per_task, daily_spend, set_by FROM workflow_budgets")
        ).one()
        assert tuple(row) == (None, 5.0, "ann")
    engine.dispose()
    _migrate(db_url, "0012", downgrade=True)
    assert "workflow_budgets" not in _tables(db_url) and "run_stops" in _tables(db_url)
    open_store(db_url).close()
    assert "workflow_budgets" in _tables(db_url)
