"""Migration 0005 (eval reports, baselines, reviews): a database at 0004 is upgraded with its
data kept, a fresh one is created at 0005, the constraints hold and can be rolled back."""

from __future__ import annotations

import psycopg
import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from opsgate.store import SCHEMA_VERSION, open_store
from opsgate.store._engine import make_engine
from opsgate.store._store import _alembic_config

NEW_TABLES = {"eval_reports", "eval_baselines", "eval_reviews"}
_REPORT = (
    "INSERT INTO eval_reports (report_id, suite, suite_version, model_router, trials, shard, "
    "started_at, ended_at, success_rate, cost_per_successful_task, unsafe_attempts, "
    "gate_passed, document, created_at) VALUES ('r1', 'mini', 1, 'router.yaml', 1, NULL, "
    "0, 1, 0.5, NULL, 0, true, '{}', 0)"
)
_REVIEW = (
    "INSERT INTO eval_reviews (report_id, task_id, trial, verdict, reviewer, notes, created_at) "
    "VALUES ('r1', 't', 0, 'pass', 'ana', '', 0)"
)


def _migrate(url: str, revision: str, downgrade: bool = False) -> None:
    engine = make_engine(url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if downgrade else command.upgrade)(config, revision)
    engine.dispose()


def _revision(url: str) -> str:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        version = str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())
    engine.dispose()
    return version


def test_a_database_at_0004_is_upgraded_and_keeps_its_data(db_url: str) -> None:
    _migrate(db_url, "0004")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        assert not NEW_TABLES & set(inspect(conn).get_table_names())
        conn.execute(
            text(
                "INSERT INTO model_cache (key, model, response, created_at, hits) "
                "VALUES ('k', 'm', '{}', 0, 3)"
            )
        )
    engine.dispose()
    with open_store(db_url) as store, store.engine.begin() as conn:
        assert set(inspect(conn).get_table_names()) >= NEW_TABLES
        assert conn.execute(text("SELECT hits FROM model_cache WHERE key = 'k'")).scalar() == 3
        conn.execute(text(_REPORT))
        conn.execute(text(_REVIEW))
    assert _revision(db_url) == SCHEMA_VERSION  # the head: 0005 and every later migration


def test_one_verdict_per_reviewer_and_trial(db_url: str) -> None:
    with open_store(db_url) as store:
        with store.engine.begin() as conn:
            conn.execute(text(_REPORT))
            conn.execute(text(_REVIEW))
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            conn.execute(text(_REVIEW))


def test_0005_rolls_back_to_0004_and_forward_again(db_url: str) -> None:
    open_store(db_url).close()
    _migrate(db_url, "0004", downgrade=True)
    engine = make_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert not NEW_TABLES & tables and "model_cache" in tables
    assert _revision(db_url) == "0004"
    open_store(db_url).close()
    assert _revision(db_url) == SCHEMA_VERSION


def test_postgres_writer_role_may_file_reports_and_verdicts(pg_cluster: object) -> None:
    url = pg_cluster.new_database()  # type: ignore[attr-defined]
    open_store(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE opsgate_writer")
        conn.execute(_REPORT)
        conn.execute(
            "INSERT INTO eval_baselines (suite, report_id, accepted_at, accepted_by, note) "
            "VALUES ('mini', 'r1', 0, 'ana', '')"
        )
        conn.execute(_REVIEW)
        conn.execute("UPDATE eval_reviews SET verdict = 'fail'")
        assert conn.execute("SELECT verdict FROM eval_reviews").fetchone() == ("fail",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM eval_baselines")
