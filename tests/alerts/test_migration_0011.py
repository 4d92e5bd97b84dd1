"""Migration 0011 (alert rules and deliveries): a database at 0010 is upgraded with its
data kept; it rolls back to 0010 and forward again."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, inspect, text

from opsgate.store import SCHEMA_VERSION, open_store
from tests.store.test_migration_0005 import _migrate, _revision

NEW = {"alert_rules", "alert_deliveries"}


def make_engine(url: str) -> Engine:
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0010_upgrades_keeps_data_and_rolls_back(db_url: str) -> None:
    _migrate(db_url, "0010")
    assert not NEW & _tables(db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workflow_stages (workflow, stage, previous, actor, reason, evidence, "
                "policy_version, at) VALUES ('w', 'draft', 'read_only', 'ana', '', '[]', 'p', 1)"
            )
        )
    engine.dispose()
    with open_store(db_url) as store, store.engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM workflow_stages")).scalar_one() == "ana"
    assert _revision(db_url) == SCHEMA_VERSION and _tables(db_url) >= NEW  # 0011 and later
    _migrate(db_url, "0010", downgrade=True)
    assert not NEW & _tables(db_url) and "workflow_stages" in _tables(db_url)
    open_store(db_url).close()
    assert _tables(db_url) >= NEW
