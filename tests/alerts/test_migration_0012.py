"""Migration 0012 (`alert_rules.demote_to`, and the quota tally's covering index): a database
at 0011 is upgraded with its rules and quota reservations kept (a rule notify-only:
`demote_to` NULL); it rolls back to 0011 and forward again."""

from __future__ import annotations

from sqlalchemy import inspect, text

from opsgate.store import SCHEMA_VERSION, open_store
from tests.alerts.test_migration_0011 import make_engine
from tests.store.test_migration_0005 import _migrate, _revision

_RULE = (
    "INSERT INTO alert_rules (workflow, kind, threshold, window_days, sinks, renotify_minutes, "
    "enabled, created_at, created_by) VALUES ('w', 'success_rate_drop', 0.1, 7, 'console', 60, "
    "true, 1, 'ana')"
)


_USE = (
    "INSERT INTO quota_uses (quota_key, subject, amount, at, run_id, call_id, released) "
    "VALUES ('wf:send', 'wf', 1, 1, 'r', 'c', false)"
)


def _quota_indexes(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {str(i["name"]) for i in inspect(engine).get_indexes("quota_uses")}
    finally:
        engine.dispose()


def _columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("alert_rules")}
    finally:
        engine.dispose()


def test_0011_upgrades_keeps_rules_and_rolls_back(db_url: str) -> None:
    _migrate(db_url, "0011")
    assert "demote_to" not in _columns(db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(_RULE))
        conn.execute(text(_USE))
    engine.dispose()
    with open_store(db_url) as store, store.engine.connect() as conn:
        row = conn.execute(text("SELECT created_by, demote_to FROM alert_rules")).one()
        assert tuple(row) == ("ana", None)
    assert _revision(db_url) == SCHEMA_VERSION and "demote_to" in _columns(db_url)
    indexes = _quota_indexes(db_url)
    assert "ix_quota_uses_window" in indexes and "ix_quota_uses_tally" not in indexes
    _migrate(db_url, "0011", downgrade=True)
    assert "demote_to" not in _columns(db_url)
    assert "ix_quota_uses_tally" in _quota_indexes(db_url)
    engine = make_engine(db_url)
    with engine.connect() as conn:  # the rule survived the rollback
        assert conn.execute(text("SELECT created_by FROM alert_rules")).scalar_one() == "ana"
        assert conn.execute(text("SELECT count(*) FROM quota_uses")).scalar_one() == 1
    engine.dispose()
    open_store(db_url).close()
    assert "demote_to" in _columns(db_url)
