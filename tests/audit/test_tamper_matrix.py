"""The tamper matrix: every column of every audit table edited, nulled, retyped, and rows
deleted, inserted and reordered, on SQLite and PostgreSQL. Each is found by `opsgate audit
verify` with exit 1 and the first bad sequence number, never a traceback.

The log under test: 18 events in three runs, signed checkpoints at 4, 8, 12 and 16 (each
also kept by the witness beside the signing key), events 0..7 archived in two segments
(retention rows at 4 and 8), so the database holds events 8..17. The targets: event 13
(covered by the checkpoint at 16), the checkpoint at 12, the retention row at 4.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from typer.testing import CliRunner

from opsgate.audit import AuditLog, Signer, default_key_path
from opsgate.cli.main import app
from opsgate.errors import AuditIntegrityError
from opsgate.recorder import Event, EventType
from opsgate.store import open_store

# 57 tampers x 2 backends: make test (CI) runs them; the edit loop keeps test_log's checks
pytestmark = pytest.mark.slow

COLUMNS = {
    "audit_events": ("seq", "run_id", "type", "at", "body", "chain_hash"),
    "audit_checkpoints": (
        "tree_size",
        "root_hash",
        "chain_hash",
        "at",
        "key_id",
        "signature",
        "frontier",
    ),
    "audit_retention": ("upto", "archived_at", "archive_sha256", "archive_name"),
}
#: each table's target row
TARGET = {
    "audit_events": "seq = 13",
    "audit_checkpoints": "tree_size = 12",
    "audit_retention": "upto = 4",
}
#: the first bad sequence number when a table's target row is tampered with
FIRST_BAD = {"audit_events": 13, "audit_checkpoints": 11, "audit_retention": 0}
#: ... and when a whole column is retyped on PostgreSQL (its first row is the first bad)
FIRST_ROW_BAD = {"audit_events": 8, "audit_checkpoints": 3, "audit_retention": 0}

#: a value of another type for each column, per row on SQLite (dynamic types)
SQLITE_RETYPE = {
    "seq": "'13a'",
    "run_id": "CAST(run_id AS BLOB)",
    "type": "CAST(type AS BLOB)",
    "at": "'noon'",
    "body": "CAST(body AS TEXT)",
    "chain_hash": "hex(chain_hash)",
    "tree_size": "'12a'",
    "root_hash": "hex(root_hash)",
    "key_id": "CAST(key_id AS BLOB)",
    "signature": "hex(signature)",
    "frontier": "CAST(frontier AS BLOB)",
    "upto": "'4a'",
    "archived_at": "'noon'",
    "archive_sha256": "CAST(archive_sha256 AS BLOB)",
    "archive_name": "CAST(archive_name AS BLOB)",
}
#: the column retyped on PostgreSQL (ALTER COLUMN ... TYPE ... USING)
PG_RETYPE = {
    "seq": ("text", "seq::text"),
    "run_id": ("bytea", "convert_to(run_id, 'UTF8')"),
    "type": ("bytea", "convert_to(type, 'UTF8')"),
    "at": ("text", "at::text"),
    "body": ("text", "encode(body, 'escape')"),
    "chain_hash": ("text", "encode(chain_hash, 'hex')"),
    "tree_size": ("text", "tree_size::text"),
    "root_hash": ("text", "encode(root_hash, 'hex')"),
    "key_id": ("bytea", "convert_to(key_id, 'UTF8')"),
    "signature": ("text", "encode(signature, 'hex')"),
    "frontier": ("bytea", "convert_to(frontier, 'UTF8')"),
    "upto": ("text", "upto::text"),
    "archived_at": ("text", "archived_at::text"),
    "archive_sha256": ("bytea", "convert_to(archive_sha256, 'UTF8')"),
    "archive_name": ("bytea", "convert_to(archive_name, 'UTF8')"),
}
#: a different value of the right type
EDIT = {
    "seq": "100",
    "run_id": "'r1'",
    "type": "'run_ended'",
    "at": "at + 1",
    "body": "(SELECT body FROM audit_events WHERE seq = 12)",
    "chain_hash": "(SELECT chain_hash FROM audit_events WHERE seq = 12)",
    "tree_size": "13",
    "root_hash": "(SELECT root_hash FROM audit_checkpoints WHERE tree_size = 16)",
    "key_id": "'0123456789abcdef'",
    "signature": "(SELECT signature FROM audit_checkpoints WHERE tree_size = 16)",
    "frontier": "(SELECT frontier FROM audit_checkpoints WHERE tree_size = 16)",
    "upto": "12",
    "archived_at": "archived_at + 1",
    "archive_sha256": "'" + "0" * 64 + "'",
    "archive_name": "archive_name || '.old'",
}


@dataclass(frozen=True)
class Tamper:
    name: str
    table: str
    run: Callable[[Connection, str], None]  # (connection, dialect)
    first_bad: int | Callable[[str], int]


def _sql(statement: str) -> Callable[[Connection, str], None]:
    return lambda conn, dialect: conn.execute(text(statement)) and None


def _retype(table: str, column: str) -> Callable[[Connection, str], None]:
    def run(conn: Connection, dialect: str) -> None:
        if dialect == "sqlite":
            value = SQLITE_RETYPE[column]
            conn.execute(text(f"UPDATE {table} SET {column} = {value} WHERE {TARGET[table]}"))
        else:
            kind, using = PG_RETYPE[column]
            conn.execute(
                text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {kind} USING {using}")
            )

    return run


def _matrix() -> list[Tamper]:
    cases: list[Tamper] = []
    for table, columns in COLUMNS.items():
        where = TARGET[table]
        for column in columns:
            cases.append(
                Tamper(
                    f"{table}.{column} edited",
                    table,
                    _sql(f"UPDATE {table} SET {column} = {EDIT[column]} WHERE {where}"),
                    FIRST_BAD[table],
                )
            )
            cases.append(
                Tamper(
                    f"{table}.{column} nulled",
                    table,
                    _sql(f"UPDATE {table} SET {column} = NULL WHERE {where}"),
                    FIRST_BAD[table],
                )
            )
            cases.append(
                Tamper(
                    f"{table}.{column} retyped",
                    table,
                    _retype(table, column),
                    lambda d, t=table: FIRST_BAD[t] if d == "sqlite" else FIRST_ROW_BAD[t],
                )
            )
        cases.append(
            Tamper(
                f"{table} row deleted",
                table,
                _sql(f"DELETE FROM {table} WHERE {where}"),
                FIRST_BAD[table],
            )
        )
    cases += [
        Tamper(
            "newest checkpoint deleted",
            "audit_checkpoints",
            _sql("DELETE FROM audit_checkpoints WHERE tree_size = 16"),
            15,
        ),
        Tamper(
            "newer retention row deleted",
            "audit_retention",
            _sql("DELETE FROM audit_retention WHERE upto = 8"),
            4,
        ),
        Tamper(
            "event inserted twice",
            "audit_events",
            _sql(
                "INSERT INTO audit_events SELECT seq, run_id, type, at, body, chain_hash "
                "FROM audit_events WHERE seq = 13"
            ),
            13,
        ),
        Tamper(
            "event appended with a forged chain",
            "audit_events",
            _sql(
                "INSERT INTO audit_events SELECT 18, run_id, type, at, body, chain_hash "
                "FROM audit_events WHERE seq = 17"
            ),
            18,
        ),
        Tamper(
            "event inserted below the retention mark",
            "audit_events",
            _sql(
                "INSERT INTO audit_events SELECT 2, run_id, type, at, body, chain_hash "
                "FROM audit_events WHERE seq = 8"
            ),
            2,
        ),
        Tamper(
            "events reordered",
            "audit_events",
            _sql(
                "UPDATE audit_events SET seq = CASE seq WHEN 12 THEN 13 ELSE 12 END "
                "WHERE seq IN (12, 13)"
            ),
            12,
        ),
        Tamper(
            "checkpoint inserted (a copy at another size)",
            "audit_checkpoints",
            _sql(
                "INSERT INTO audit_checkpoints SELECT 10, root_hash, chain_hash, at, key_id, "
                "signature, frontier FROM audit_checkpoints WHERE tree_size = 12"
            ),
            9,
        ),
        Tamper(
            "checkpoint inserted twice with another signature",
            "audit_checkpoints",
            _sql(
                "INSERT INTO audit_checkpoints SELECT tree_size, root_hash, chain_hash, at, "
                "key_id, (SELECT signature FROM audit_checkpoints WHERE tree_size = 4), "
                "frontier FROM audit_checkpoints WHERE tree_size = 12"
            ),
            11,
        ),
        Tamper(
            "checkpoints reordered",
            "audit_checkpoints",
            _sql(
                "UPDATE audit_checkpoints SET tree_size = CASE tree_size WHEN 12 THEN 16 "
                "ELSE 12 END WHERE tree_size IN (12, 16)"
            ),
            11,
        ),
        Tamper(
            "retention row inserted",
            "audit_retention",
            _sql(
                "INSERT INTO audit_retention SELECT 12, archived_at, archive_sha256, "
                "archive_name FROM audit_retention WHERE upto = 8"
            ),
            8,
        ),
        Tamper(
            "retention rows reordered",
            "audit_retention",
            _sql(
                "UPDATE audit_retention SET upto = CASE upto WHEN 4 THEN 8 ELSE 4 END "
                "WHERE upto IN (4, 8)"
            ),
            0,
        ),
    ]
    return cases


MATRIX = _matrix()


def _unguard(engine: Engine) -> None:
    """What an attacker with the database's owner rights does first: lift the append-only
    triggers, the primary keys and the NOT NULL constraints (SQLite: rebuild each table)."""
    with engine.begin() as conn:
        for table, columns in COLUMNS.items():
            if engine.dialect.name == "sqlite":
                conn.execute(text(f"CREATE TABLE {table}_copy AS SELECT * FROM {table}"))
                conn.execute(text(f"DROP TABLE {table}"))
                conn.execute(text(f"ALTER TABLE {table}_copy RENAME TO {table}"))
            else:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
                conn.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey"))
                for column in columns:
                    conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL"))


def _events(start: int, count: int) -> list[Event]:
    return [
        Event(
            EventType.STEP,
            f"r{1 + (start + i) // 6}",
            start + i,
            1000.0 + start + i,
            {"i": start + i},
        )
        for i in range(count)
    ]


@pytest.fixture
def tampered_log(db_url: str, tmp_path: Path) -> Any:
    store = open_store(db_url)
    log = AuditLog(store, Signer.from_file(default_key_path(), create=True))
    assert log.witness is not None
    for start in range(0, 16, 4):
        log.append(_events(start, 4))
        log.checkpoint()
    log.append(_events(16, 2))
    archive = tmp_path / "archive"
    assert log.archive_before(1004.5, archive) is not None
    assert log.archive_before(1008.5, archive) is not None
    report = log.verify()
    assert (report.events, report.checkpoints, report.archives, report.witnessed) == (18, 4, 2, 4)
    _unguard(store.engine)
    yield log, db_url
    store.close()


@pytest.mark.parametrize("tamper", MATRIX, ids=[t.name for t in MATRIX])
def test_every_tamper_is_named_with_the_first_bad_event(
    tampered_log: tuple[AuditLog, str], tamper: Tamper
) -> None:
    log, url = tampered_log
    dialect = log.store.dialect
    with log.store.engine.begin() as conn:
        tamper.run(conn, dialect)
    first_bad = tamper.first_bad if isinstance(tamper.first_bad, int) else tamper.first_bad(dialect)
    with pytest.raises(AuditIntegrityError) as info:
        log.verify()
    assert info.value.seq == first_bad, str(info.value)

    result = CliRunner().invoke(app, ["audit", "verify", "--db", url])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert f"FAILED at event {first_bad}:" in " ".join(result.output.split())


def test_the_untampered_log_verifies_from_the_cli(tampered_log: tuple[AuditLog, str]) -> None:
    _, url = tampered_log
    result = CliRunner().invoke(app, ["audit", "verify", "--db", url])
    assert result.exit_code == 0, result.output
    assert "18 events, 4 signed checkpoints, 2 archives, 4 witnessed heads" in result.output


def test_archives_kept_offline_are_listed_not_failed(
    tampered_log: tuple[AuditLog, str], tmp_path: Path
) -> None:
    log, url = tampered_log
    shutil.move(tmp_path / "archive", tmp_path / "offline")
    with pytest.raises(AuditIntegrityError, match="cannot be read") as info:
        log.verify()
    assert info.value.seq == 0
    report = log.verify(allow_missing_archives=True)
    assert report.events == 18 and len(report.archives_missing) == 2
    result = CliRunner().invoke(app, ["audit", "verify", "--db", url, "--allow-missing-archives"])
    assert result.exit_code == 0 and "not re-checked" in result.output


def test_a_text_body_names_its_event_instead_of_crashing_the_readers(
    tampered_log: tuple[AuditLog, str],
) -> None:
    """The reported crash: SQLite's replace() on the blob stores text, and `audit verify`
    raised `TypeError: string argument without an encoding`."""
    log, url = tampered_log
    with log.store.engine.begin() as conn:
        if log.store.dialect == "sqlite":  # dynamic types: one row becomes text
            conn.execute(
                text("UPDATE audit_events SET body = replace(body, 'i', 'j') WHERE seq = 9")
            )
            first = 9
        else:  # PostgreSQL: the whole column is retyped; its first row (8) is the first bad
            conn.execute(
                text(
                    "ALTER TABLE audit_events ALTER COLUMN body TYPE text "
                    "USING replace(encode(body, 'escape'), 'i', 'j')"
                )
            )
            first = 8
    with pytest.raises(AuditIntegrityError, match=f"event {first}'s body is stored as text"):
        log.verify()
    with pytest.raises(AuditIntegrityError, match=f"event {first}'s body is stored as text"):
        log.records("r2")
    result = CliRunner().invoke(app, ["audit", "show", "r2", "--db", url])
    assert result.exit_code in (1, 2) and "Traceback" not in result.output


def test_an_event_moved_to_another_run_is_refused_by_audit_show(
    tampered_log: tuple[AuditLog, str],
) -> None:
    log, _ = tampered_log
    with log.store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET run_id = 'r1' WHERE seq = 13"))
    with pytest.raises(AuditIntegrityError, match="belongs to run 'r3'"):
        log.records("r1")
