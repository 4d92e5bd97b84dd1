"""`Store`: the one owner of the database connection and its schema."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Table, select
from sqlalchemy.exc import DBAPIError, OperationalError

from opsgate.errors import StoreError
from opsgate.store._engine import (
    NoDatabaseError,
    default_url,
    describe_db_error,
    make_engine,
    nothing_yet,
    prepare_sqlite_file,
    table_names,
)
from opsgate.store._schema import meta

__all__ = ["SchemaState", "Store", "open_store", "schema_state", "upgrade_store"]

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

    def driver_insert(self, table: Table) -> str:
        """A whole-row INSERT of ``table`` in the driver's own SQL (its placeholders, the
        table's column order), for a DB-API ``executemany`` of tuples on a hot path, where
        SQLAlchemy would compile every row's parameters."""
        mark = "%s" if self.dialect == "postgresql" else "?"
        columns = [column.name for column in table.columns]
        return (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join([mark] * len(columns))})"
        )

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


def open_store(url: str | None = None, *, migrate: bool = True, create: bool = True) -> Store:
    """Open the opsgate database: created (``create``) and upgraded (``migrate``) as needed.

    Commands that write open it with the defaults: the first write makes the default SQLite
    file (and opsgate's home folder) and migrates it. Commands that only read pass
    ``create=False``, and ``migrate=False`` when they must not change the schema either
    (``migrate=False`` implies ``create=False``): neither ever leaves a file behind.

    A SQLite file in a folder that does not exist is refused, except in opsgate's own home.

    Raises:
        NoDatabaseError: there is no database yet (nothing recorded) and ``create`` is off.
        StoreError: not a database, a database of something else, a schema newer than this
            opsgate (or older, with ``migrate`` off), a missing folder, unreachable server,
            read-only or full disk.
    """
    store, _ = _open(url or default_url(), migrate=migrate, create=create and migrate)
    return store


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands.

    Attributes:
        url: The database (password hidden).
        current: Its Alembic revision (None: no revision recorded).
        head: The newest revision this opsgate knows.
        known: Whether this opsgate knows ``current`` (False: the database is newer).
    """

    url: str
    current: str | None
    head: str
    known: bool


def schema_state(url: str | None = None) -> SchemaState:
    """The revision of an existing database; nothing is created or changed.

    Raises:
        NoDatabaseError: there is no database yet.
        StoreError: not a database, or one of something else.
    """
    url = url or default_url()
    prepare_sqlite_file(url, create=False)
    engine = make_engine(url)
    try:
        _check_ours(engine, create=False)
        script = ScriptDirectory.from_config(_alembic_config())
        current = _current_revision(engine)
        return SchemaState(
            url=engine.url.render_as_string(hide_password=True),
            current=current,
            head=_head(script),
            known=current is None or _knows(script, current),
        )
    except (DBAPIError, OperationalError) as exc:
        raise StoreError(describe_db_error(engine, exc)) from None
    finally:
        engine.dispose()


def upgrade_store(url: str | None = None) -> tuple[str | None, SchemaState]:
    """Create (if need be) and upgrade the database to this opsgate's schema.

    Returns:
        The revision it was at before (None: it was created), and where it stands now.

    Raises:
        StoreError: as `open_store`.
    """
    store, before = _open(url or default_url(), migrate=True, create=True)
    with store:
        head = _head(ScriptDirectory.from_config(_alembic_config()))
        return before, SchemaState(url=store.url, current=head, head=head, known=True)


def _open(url: str, *, migrate: bool, create: bool) -> tuple[Store, str | None]:
    """The open store, and its revision before any migration."""
    prepare_sqlite_file(url, create=create)
    engine = make_engine(url)
    try:
        before = _check_and_migrate(engine, migrate=migrate, create=create, url=url)
    except StoreError:
        engine.dispose()
        raise
    except (DBAPIError, OperationalError) as exc:
        engine.dispose()
        raise StoreError(describe_db_error(engine, exc)) from None
    return Store(engine), before


def _head(script: ScriptDirectory) -> str:
    head = script.get_current_head()
    assert head is not None  # the migrations are a single line of revisions
    return head


def _knows(script: ScriptDirectory, revision: str) -> bool:
    try:
        script.get_revision(revision)
    except Exception:
        return False
    return True


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _check_ours(engine: Engine, *, create: bool) -> None:
    """Refuse a database that holds another application's tables; without ``create``, one
    that holds no tables at all is not an opsgate database yet (`NoDatabaseError`)."""
    where = engine.url.render_as_string(hide_password=True)
    tables = set(table_names(engine))
    if not tables and not create:
        raise NoDatabaseError(nothing_yet(where))
    ours = "opsgate_meta" in tables and "alembic_version" in tables
    if tables and not ours:
        shown = ", ".join(sorted(tables)[:5])
        raise StoreError(
            f"`{where}` holds another application's tables ({shown}); "
            "point OPSGATE_DATABASE_URL at an empty or opsgate database"
        )


def _check_and_migrate(engine: Engine, *, migrate: bool, create: bool, url: str) -> str | None:
    """Refuse what is not ours or is newer; create or upgrade as allowed. Returns the
    revision the database was at (None: it had none)."""
    where = engine.url.render_as_string(hide_password=True)
    _check_ours(engine, create=create)
    script = ScriptDirectory.from_config(_alembic_config())
    head = _head(script)
    current = _current_revision(engine)
    if current is not None and current != head and not _knows(script, current):
        raise StoreError(
            f"`{where}` is at schema `{current}`, newer than this opsgate "
            f"knows (up to `{head}`): upgrade opsgate"
        )
    if current == head:
        return current
    if not migrate:
        raise StoreError(
            f"`{where}` is at schema `{current or 'none'}`, older than this opsgate's "
            f"`{head}`: run `opsgate db upgrade{'' if url == default_url() else ' --db ' + where}`"
        )
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
    return current
