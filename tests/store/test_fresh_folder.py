"""A fresh folder: `opsgate db upgrade|current`, read-only commands that create nothing and
say there is nothing recorded yet, a missing folder refused in one line, and the default
database created and migrated by the first write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner, Result

from opsgate.cli.eval_main import app as eval_app
from opsgate.cli.main import app
from opsgate.errors import StoreError
from opsgate.store import (
    SCHEMA_VERSION,
    NoDatabaseError,
    default_url,
    open_store,
    schema_state,
    upgrade_store,
)
from opsgate.store._engine import make_engine
from opsgate.store._store import _alembic_config
from tests.evals.test_eval_store import make_report

ENV = {"COLUMNS": "400", "NO_COLOR": "1", "USER": "maria"}


def opsgate(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=ENV)


def agent_eval(*args: str) -> Result:
    return CliRunner().invoke(eval_app, list(args), env=ENV)


def one_line(result: Result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, and an opsgate home in it that does not exist yet."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("OPSGATE_HOME", str(work / "home"))
    return work


def everything_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def at_revision(url: str, revision: str) -> None:
    """A database migrated to ``revision`` only (an older opsgate's)."""
    engine = make_engine(url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    engine.dispose()


def set_revision(url: str, revision: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    engine.dispose()


# -- opsgate db upgrade | current ------------------------------------------------------------


def test_db_upgrade_creates_the_default_database_and_current_prints_it(fresh: Path) -> None:
    result = opsgate("db", "current")
    assert result.exit_code == 0
    assert one_line(result).startswith("nothing recorded yet: there is no opsgate database")
    assert everything_in(fresh) == []
    result = opsgate("db", "upgrade")
    assert result.exit_code == 0, result.output
    database = fresh / "home" / "opsgate.db"
    assert one_line(result) == f"created `sqlite:///{database}` at schema {SCHEMA_VERSION}"
    assert database.is_file()
    result = opsgate("db", "current")
    assert result.exit_code == 0
    assert one_line(result) == f"{SCHEMA_VERSION} (head) in `sqlite:///{database}`"
    result = opsgate("db", "upgrade")
    assert result.exit_code == 0
    assert "is already at schema" in one_line(result)
    with open_store() as store:
        assert store.meta_value("log_id") is not None  # made as by any first open


def test_db_upgrade_brings_an_older_database_to_the_head(db_url: str) -> None:
    at_revision(db_url, "0004")
    assert schema_state(db_url).current == "0004"
    result = opsgate("db", "current", "--db", db_url)
    assert result.exit_code == 0
    line = one_line(result)
    assert line.startswith("0004 in `") and f"older than this opsgate's {SCHEMA_VERSION}" in line
    assert "run `opsgate db upgrade --db " in line
    # a command that must not change the schema names the command that does
    result = opsgate("audit", "verify", "--db", db_url)
    assert result.exit_code == 2
    line = one_line(result)
    assert "is at schema `0004`, older than this opsgate's" in line
    assert "run `opsgate db upgrade --db " in line and "migration" not in line
    result = opsgate("db", "upgrade", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert f"from schema 0004 to {SCHEMA_VERSION}" in one_line(result)
    state = schema_state(db_url)
    assert state.current == state.head == SCHEMA_VERSION
    with open_store(db_url, migrate=False) as store:
        assert store.meta_value("audit_salt") is not None
    assert opsgate("audit", "verify", "--db", db_url).exit_code == 0


def test_the_migration_hint_without_db_names_the_plain_command(fresh: Path) -> None:
    url = default_url()
    (fresh / "home").mkdir()
    at_revision(url, "0004")
    with pytest.raises(StoreError, match=r"run `opsgate db upgrade`$"):
        open_store(migrate=False)


def test_a_newer_database_is_shown_and_not_upgraded(db_url: str) -> None:
    open_store(db_url).close()
    set_revision(db_url, "0099")
    result = opsgate("db", "current", "--db", db_url)
    assert result.exit_code == 0
    assert "0099 in `" in one_line(result) and "newer than this opsgate" in result.output
    result = opsgate("db", "upgrade", "--db", db_url)
    assert result.exit_code == 2
    assert "newer than this opsgate" in one_line(result)


def test_db_commands_refuse_what_is_not_ours(tmp_path: Path) -> None:
    corrupt = tmp_path / "bad.db"
    corrupt.write_bytes(b"this is not a database, just some bytes " * 200)
    foreign = tmp_path / "other.db"
    engine = create_engine(f"sqlite:///{foreign}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE invoices (id INTEGER)"))
    engine.dispose()
    for path, expected in ((corrupt, "not a usable SQLite"), (foreign, "another application")):
        for verb in ("current", "upgrade"):
            result = opsgate("db", verb, "--db", f"sqlite:///{path}")
            assert result.exit_code == 2 and expected in one_line(result)


# -- read-only commands on an empty folder ---------------------------------------------------

READ_ONLY = [
    (("audit", "verify"), 0),
    (("audit", "checkpoint"), 0),
    (("audit", "show", "0123456789abcdef"), 2),
    (("audit", "prove", "0"), 2),
    (("approvals", "list"), 0),
    (("approvals", "list", "--all"), 0),
    (("db", "current"), 0),
]


@pytest.mark.parametrize(("args", "code"), READ_ONLY, ids=[" ".join(a) for a, _ in READ_ONLY])
def test_read_only_commands_create_nothing(fresh: Path, args: tuple[str, ...], code: int) -> None:
    result = opsgate(*args)
    assert result.exit_code == code, result.output
    line = one_line(result)
    assert "nothing recorded yet" in line and "schema None" not in line
    assert everything_in(fresh) == []  # no home, no database, no signing key


@pytest.mark.parametrize("use_home", [True, False])
def test_read_only_commands_create_nothing_in_the_current_folder(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, use_home: bool
) -> None:
    """Without $OPSGATE_HOME the default is ./.opsgate/: it is not made either."""
    if not use_home:
        monkeypatch.delenv("OPSGATE_HOME")
    for args, code in READ_ONLY:
        assert opsgate(*args).exit_code == code
    assert agent_eval("baseline", "show", "mini").exit_code == 2
    assert agent_eval("baseline", "history", "mini").exit_code == 2
    assert everything_in(fresh) == []


def test_an_empty_file_left_behind_counts_as_nothing_recorded(fresh: Path) -> None:
    """An older opsgate's read-only commands left an empty file: it is left as it is."""
    (fresh / "home").mkdir()
    empty = fresh / "home" / "opsgate.db"
    empty.touch()
    for args, code in READ_ONLY:
        result = opsgate(*args)
        assert result.exit_code == code and "nothing recorded yet" in result.output
    assert everything_in(fresh) == ["home", "home/opsgate.db"] and empty.stat().st_size == 0


def test_open_store_without_create_refuses_to_create(db_url: str) -> None:
    """Also on PostgreSQL: an empty database is not made an opsgate one by a read."""
    for migrate in (True, False):
        with pytest.raises(NoDatabaseError, match="nothing recorded yet"):
            open_store(db_url, create=False, migrate=migrate)
        with pytest.raises(NoDatabaseError):
            schema_state(db_url)
    if db_url.startswith("sqlite"):
        assert not Path(db_url.removeprefix("sqlite:///")).exists()
    else:
        engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
        assert inspect(engine).get_table_names() == []
        engine.dispose()
    open_store(db_url).close()  # a write creates it ...
    open_store(db_url, create=False).close()  # ... and then reads find it
    open_store(db_url, migrate=False).close()


# -- a folder that does not exist ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("db", "upgrade"),
        ("db", "current"),
        ("audit", "verify"),
        ("audit", "show", "0123456789abcdef"),
        ("approvals", "list"),
    ],
    ids=lambda a: " ".join(a),
)
def test_a_missing_folder_is_refused_in_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    missing = tmp_path / "no" / "such"
    url = f"sqlite:///{missing / 'opsgate.db'}"
    for result in (
        opsgate(*args, "--db", url),
        CliRunner().invoke(app, list(args), env={**ENV, "OPSGATE_DATABASE_URL": url}),
    ):
        assert result.exit_code == 2, result.output
        line = one_line(result)
        assert line.startswith("error: the folder `") and "does not exist" in line
        assert str(missing) in line
    assert not (tmp_path / "no").exists()


def test_the_store_refuses_a_missing_folder_but_makes_its_own_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path / 'a' / 'b.db'}")
    with pytest.raises(StoreError, match="does not exist"):
        upgrade_store(f"sqlite:///{tmp_path / 'a' / 'b.db'}")
    assert not (tmp_path / "a").exists()
    monkeypatch.setenv("OPSGATE_HOME", str(tmp_path / "deep" / "home"))
    with pytest.raises(NoDatabaseError):
        open_store(create=False)  # a read does not make the home ...
    assert not (tmp_path / "deep").exists()
    open_store().close()  # ... a write does
    assert (tmp_path / "deep" / "home" / "opsgate.db").is_file()


# -- the first write ------------------------------------------------------------------------


def test_the_first_write_creates_and_migrates_the_default_database(fresh: Path) -> None:
    report = make_report()
    (fresh / "eval.json").write_text(json.dumps(report))
    result = agent_eval("baseline", "accept", "eval.json")
    assert result.exit_code == 0, result.output
    database = fresh / "home" / "opsgate.db"
    assert database.is_file()
    state = schema_state()
    assert state.current == state.head == SCHEMA_VERSION
    result = opsgate("db", "current")
    assert one_line(result) == f"{SCHEMA_VERSION} (head) in `sqlite:///{database}`"
    result = agent_eval("baseline", "show", report["suite"])
    assert result.exit_code == 0 and report["report_id"] in result.output
    result = opsgate("audit", "verify")
    assert result.exit_code == 0 and result.output.startswith("ok 0 events")
    result = opsgate("approvals", "list")
    assert result.exit_code == 0 and "no pending requests" in result.output
