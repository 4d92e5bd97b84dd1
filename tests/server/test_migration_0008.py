"""Migration 0008 (the console's tokens): a database at 0007 is upgraded with its data kept,
the token hash is unique, and it rolls back to 0007; on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

import opsgate.store
from opsgate.server import Role, authenticate, create_token
from opsgate.store import open_store


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option(
        "script_location", str(Path(opsgate.store.__file__).with_name("migrations"))
    )
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)
    engine.dispose()


def test_0008_upgrades_0007_and_rolls_back(db_url: str) -> None:
    open_store(db_url).close()  # created at the head, with its salt and log id
    _migrate(db_url, "0007", down=True)
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        assert "api_tokens" not in inspect(conn).get_table_names()
        conn.execute(
            text(
                "INSERT INTO run_stops (run_id, actor, reason, requested_at) "
                "VALUES ('r', 'ann', '', 0)"
            )
        )
    with open_store(db_url) as store:  # a write upgrades it
        token, _ = create_token(store, name="oncall", role=Role.ADMIN, created_by="t")
        assert authenticate(store, token) is not None
        with store.engine.begin() as conn:
            assert conn.execute(text("SELECT actor FROM run_stops")).scalar() == "ann"
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO api_tokens (token_id, name, role, token_sha256, created_at, "
                    "created_by) SELECT 'x', 'other', 'viewer', token_sha256, 0, 't' "
                    "FROM api_tokens"
                )
            )
    engine.dispose()
