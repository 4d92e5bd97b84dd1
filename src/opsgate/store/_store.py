"""`Store`: the one owner of the database connection and its schema."""

from __future__ import annotations

import secrets
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, OperationalError

from opsgate.errors import StoreError
from opsgate.store._engine import default_url, describe_db_error, make_engine, table_names
from opsgate.store._schema import meta

__all__ = ["Store", "open_store"]

_MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


class Store:
    """An open opsgate database at the current schema.

    Attributes:
        engine: The SQLAlchemy engine (one per process; share it).
        url: The URL it was opened with (password hidden when shown).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def meta_value(self, key: str) -> str | None:
        """A value of the meta table (the audit salt, the log id)."""
        with self.engine.connect() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str | None = None, *, migrate: bool = True) -> Store:
    """Open (and create or upgrade, unless ``migrate`` is False) the opsgate database.

    Raises:
        StoreError: not a database, a database of something else, a schema newer than this
            opsgate, unreachable server, read-only or full disk.
    """
    engine = make_engine(url or default_url())
    try:
        _check_and_migrate(engine, migrate)
    except StoreError:
        engine.dispose()
        raise
    except (DBAPIError, OperationalError) as exc:
        engine.dispose()
        raise StoreError(describe_db_error(engine, exc)) from None
    return Store(engine)


def _check_and_migrate(engine: Engine, migrate: bool) -> None:
    where = engine.url.render_as_string(hide_password=True)
    tables = set(table_names(engine))
    ours = "opsgate_meta" in tables and "alembic_version" in tables
    if tables and not ours:
        shown = ", ".join(sorted(tables)[:5])
        raise StoreError(
            f"`{where}` holds another application's tables ({shown}); "
            "point OPSGATE_DATABASE_URL at an empty or opsgate database"
        )
    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current is not None and current != head:
        try:
            script.get_revision(current)
        except Exception:
            raise StoreError(
                f"`{where}` is at schema `{current}`, newer than this opsgate "
                f"knows (up to `{head}`): upgrade opsgate"
            ) from None
    if current == head:
        return
    if not migrate:
        raise StoreError(f"`{where}` is at schema `{current}`; run a migration to `{head}`")
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        if conn.execute(select(meta.c.value).where(meta.c.key == "audit_salt")).first() is None:
            conn.execute(
                meta.insert(),
                [
                    {"key": "audit_salt", "value": secrets.token_hex(32)},
                    {"key": "log_id", "value": secrets.token_hex(16)},
                ],
            )
