"""Opening the database: where it is, how it is configured, and refusing what is not ours."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from opsgate import environment
from opsgate.errors import StoreError

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DIR_ENV",
    "NoDatabaseError",
    "default_url",
    "home_url",
    "make_engine",
    "prepare_sqlite_file",
]

#: Environment variable naming the database (``postgresql://…`` or ``sqlite:///…``).
DATABASE_URL_ENV = environment.DATABASE_URL_ENV
#: Environment variable naming the data directory (default ``./.opsgate``).
DEFAULT_DIR_ENV = environment.HOME_ENV

#: How long a new PostgreSQL connection waits for a server that says it is shutting down,
#: starting up or recovering (a restart, a failover), and for one refusing connections (or
#: closing them during the handshake, as a server being killed does).
#: A restart then looks like a pause to the audit writer and the approval queue, not like
#: a failure (PostgreSQL's `pg_ctl restart` takes about a second).
PG_RESTART_WAIT_S = 15.0
PG_REFUSED_WAIT_S = 3.0
_PG_RESTARTING = (
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)


class NoDatabaseError(StoreError):
    """There is no opsgate database yet (nothing was recorded), and the caller asked not to
    create one: read-only commands say so in one line and leave nothing behind."""


def default_url() -> str:
    """``$OPSGATE_DATABASE_URL``, else a SQLite file under ``$OPSGATE_HOME`` or ``.opsgate/``."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    return home_url()


def home_url() -> str:
    """The SQLite file in opsgate's own home (``$OPSGATE_HOME`` or ``.opsgate/``): the one
    database whose folder opsgate may create (on a write)."""
    home = environment.home()
    return f"sqlite:///{home / 'opsgate.db'}"


def _sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None: not SQLite, in memory, or an SQLite URI)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # make_engine names the problem
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def prepare_sqlite_file(url: str, *, create: bool) -> None:
    """Check (before anything connects, which would create it) where a SQLite database lives.

    A folder that does not exist is refused, never created, unless it is opsgate's own home
    (``url`` is `home_url()`), which a write (``create``) may make. Without ``create``, a
    missing or empty file raises `NoDatabaseError` and nothing is created.

    Raises:
        StoreError: the folder does not exist (or cannot be created).
        NoDatabaseError: no database and ``create`` is False.
    """
    path = _sqlite_file(url)
    if path is None:
        return
    folder = path.parent
    if not folder.is_dir():
        if url != home_url():
            raise StoreError(
                f"the folder `{folder}` of the database `{path}` does not exist: create it "
                "first, or point --db / OPSGATE_DATABASE_URL at an existing folder"
            )
        if not create:
            raise NoDatabaseError(nothing_yet(path))
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create `{folder}`: {exc.strerror}") from None
    if create:
        return
    if path.exists() and not path.is_file():
        raise StoreError(f"`{path}` is not a file: point --db at an SQLite database file")
    if not path.exists() or path.stat().st_size == 0:
        raise NoDatabaseError(nothing_yet(path))


def nothing_yet(where: object) -> str:
    """The one line read-only commands print when there is no database."""
    return (
        f"nothing recorded yet: there is no opsgate database at `{where}` (the first write "
        "creates it; `opsgate db upgrade` creates it now)"
    )


def _normalise(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite in WAL mode with synchronous commits, or PostgreSQL.

    Transactions on SQLite begin DEFERRED, or IMMEDIATE (taking the write lock at once) on
    connections with the execution option ``sqlite_immediate=True``: the audit log uses
    that so concurrent appenders serialise instead of failing to upgrade a read lock.
    """
    url = _normalise(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"`{url}` is not a database URL (sqlite:///path or postgresql://…)"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if parsed.get_backend_name() == "postgresql":
        try:
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        except Exception as exc:  # missing driver and the like
            raise StoreError(f"cannot use `{parsed.render_as_string()}`: {exc}") from None
        event.listen(engine, "do_connect", _connect_through_restarts)
        return engine
    raise StoreError(
        f"unsupported database `{parsed.get_backend_name()}`: use SQLite or PostgreSQL"
    )


def _connect_through_restarts(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    """Open a PostgreSQL connection, waiting for a server that is restarting."""
    started = time.monotonic()
    delay = 0.05
    while True:
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            text = str(exc).lower()
            waited = time.monotonic() - started
            if any(needle in text for needle in _PG_RESTARTING):
                limit = PG_RESTART_WAIT_S
            elif "connection refused" in text or "server closed the connection" in text:
                limit = PG_REFUSED_WAIT_S
            else:
                raise
            if waited + delay > limit:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _sqlite_engine(url: str) -> Engine:
    """The engine only: folders and files are `prepare_sqlite_file`'s business (and a
    connection creates a missing file, so it is called first)."""
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
        except sqlite3.OperationalError:
            pass  # a read-only file cannot switch modes; reads still work
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def table_names(engine: Engine) -> list[str]:
    """The tables of the database, or a `StoreError` if it is not a database at all."""
    try:
        return inspect(engine).get_table_names()
    except (DBAPIError, OperationalError) as exc:
        raise StoreError(describe_db_error(engine, exc)) from None


def describe_db_error(engine: Engine, exc: BaseException) -> str:
    """One line saying what went wrong with the database, and what to do."""
    where = engine.url.render_as_string(hide_password=True)
    original = getattr(exc, "orig", exc)
    text = (
        str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    )
    lowered = text.lower()
    if "file is not a database" in lowered or "malformed" in lowered:
        return (
            f"`{where}` is not a usable SQLite database ({text}); move it aside or point "
            f"{DATABASE_URL_ENV} elsewhere"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return f"`{where}` is read-only ({text}); nothing was written"
    if ("disk" in lowered and "full" in lowered) or "no space" in lowered:
        return f"the disk holding `{where}` is full ({text}); nothing was written"
    if "unable to open" in lowered:
        return f"cannot open `{where}` ({text})"
    if "connection" in lowered or "could not connect" in lowered:
        return f"cannot connect to `{where}` ({text})"
    return f"database error on `{where}`: {text}"
