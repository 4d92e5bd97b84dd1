"""Migration 0006 (what a run was for): runs and cost entries of a database at 0005 are kept
and become production; eval trials are labelled from then on; it rolls back and forward."""

from __future__ import annotations

from sqlalchemy import inspect, text

from opsgate.store import SCHEMA_VERSION, open_store
from opsgate.store._engine import make_engine
from tests.store.test_migration_0005 import _migrate, _revision

_RUN = (
    "INSERT INTO runs (run_id, workflow, invoker, agent_id, policy_version, status, reason, "
    "cost_usd, tool_calls, started_at) VALUES ('old', 'w', 'ana', 'bot', 'p', 'completed', '', "
    "0.5, 1, 10)"
)
_ENTRY = (
    "INSERT INTO cost_entries (run_id, workflow, at, kind, input_tokens, output_tokens, "
    "cached_input_tokens, cost_usd, estimate, latency_s, cache_hit, attempts, ok) VALUES "
    "('old', 'w', 10, 'model', 1, 1, 0, 0.5, false, 0.1, false, 1, true)"
)


def _columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_rows_of_a_database_at_0005_become_production(db_url: str) -> None:
    _migrate(db_url, "0005")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(_RUN))
        conn.execute(text(_ENTRY))
    engine.dispose()
    with open_store(db_url) as store, store.engine.connect() as conn:
        assert conn.execute(text("SELECT purpose FROM runs")).scalar_one() == "production"
        assert conn.execute(text("SELECT purpose FROM cost_entries")).scalar_one() == "production"
    assert _revision(db_url) == SCHEMA_VERSION


def test_0006_rolls_back_and_forward(db_url: str) -> None:
    open_store(db_url).close()
    _migrate(db_url, "0005", downgrade=True)
    assert "purpose" not in _columns(db_url, "runs") | _columns(db_url, "cost_entries")
    open_store(db_url).close()
    assert "purpose" in _columns(db_url, "runs") and "purpose" in _columns(db_url, "cost_entries")
