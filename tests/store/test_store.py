"""Opening the store: fresh, reopened, and every way a database can be wrong."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from opsgate.errors import StoreError
from opsgate.store import default_url, meta, open_store


def test_open_creates_and_reopens(db_url: str) -> None:
    store = open_store(db_url)
    log_id = store.meta_value("log_id")
    salt = store.meta_value("audit_salt")
    store.close()
    again = open_store(db_url)
    assert again.meta_value("log_id") == log_id and again.meta_value("audit_salt") == salt
    assert log_id is not None and len(bytes.fromhex(salt or "")) == 32
    again.close()


def test_sqlite_is_in_wal_mode_with_synchronous_commits(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    store.close()


def test_default_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPSGATE_DATABASE_URL", raising=False)
    monkeypatch.setenv("OPSGATE_HOME", str(tmp_path))
    assert default_url() == f"sqlite:///{tmp_path / 'opsgate.db'}"
    monkeypatch.setenv("OPSGATE_DATABASE_URL", "postgresql://u@h/db")
    assert default_url() == "postgresql://u@h/db"


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not a database, just some bytes " * 200)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        open_store(f"sqlite:///{path}")


def test_foreign_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE invoices (id INTEGER)"))
    engine.dispose()
    with pytest.raises(StoreError, match="another application's tables \\(invoices\\)"):
        open_store(f"sqlite:///{path}")


def test_newer_schema_is_refused(db_url: str) -> None:
    open_store(db_url).close()
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(StoreError, match="newer than this opsgate"):
        open_store(db_url)


def test_bad_urls() -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        open_store("nonsense")
    with pytest.raises(StoreError, match="unsupported database"):
        open_store("mysql://u@localhost/db")
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql://nobody@127.0.0.1:1/none")


def test_postgres_writer_role_cannot_change_the_audit_trail(pg_cluster: object) -> None:
    url = pg_cluster.new_database()  # type: ignore[attr-defined]
    store = open_store(url)
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_events VALUES (0, 'r', 't', 0, '\\x00', '\\x00')"))
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")  # even without triggers
        conn.execute("SET ROLE opsgate_writer")
        conn.execute("INSERT INTO audit_events VALUES (1, 'r', 't', 0, '\\x00', '\\x00')")
        for statement in (
            "UPDATE audit_events SET type = 'x'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM audit_events").fetchone() == (2,)


def test_driver_insert_writes_whole_rows_with_the_drivers_placeholders(db_url: str) -> None:
    """What the hot paths hand the DB-API cursor's executemany: every column of the table,
    in its order, with the driver's own placeholders (`?` for sqlite3, `%s` for psycopg)."""
    with open_store(db_url) as store:
        sql = store.driver_insert(meta)
        mark = "%s" if store.dialect == "postgresql" else "?"
        assert sql == f"INSERT INTO opsgate_meta (key, value) VALUES ({mark}, {mark})"
        with store.engine.begin() as conn:
            conn.exec_driver_sql(sql, [("driver_insert:a", "1"), ("driver_insert:b", "2")])
        assert (store.meta_value("driver_insert:a"), store.meta_value("driver_insert:b")) == (
            "1",
            "2",
        )
