"""Tests never touch the developer's opsgate home: each has its own, and the conftest's guard
fails a test after which a real home changed (tested here on a stand-in "real home")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from opsgate.audit import AuditLog, Signer
from opsgate.recorder import Event, EventType
from opsgate.store import default_url, open_store
from tests.conftest import (
    REAL_HOMES,
    REPOSITORY,
    check_untouched,
    home_changes,
    real_homes,
    snapshot,
)

LEAKY = "tests/test_something.py::test_leaky"


def _write_to_default_store() -> None:
    """What a leaky test does: record something in the default database."""
    with open_store() as store:
        AuditLog(store, Signer.generate()).append([Event(EventType.STEP, "r", 0, 1.0, {"i": 0})])


def _within(path: str, places: list[Path]) -> bool:
    return any(Path(path) == place or place in Path(path).parents for place in places)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, list[Path]]:
    """A stand-in repository (the current folder) and user home, and the places watched."""
    repository, user = tmp_path / "repo", tmp_path / "user"
    repository.mkdir()
    user.mkdir()
    monkeypatch.chdir(repository)
    monkeypatch.delenv("OPSGATE_HOME")
    places = real_homes({}, repository, user)
    return repository, user, [p for p in places if tmp_path in p.parents]


def test_the_real_homes_are_the_repository_the_user_home_and_the_environment(
    tmp_path: Path,
) -> None:
    environ = {
        "OPSGATE_HOME": "data",
        "OPSGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'db' / 'o.db'}",
        "OPSGATE_AUDIT_SIGNING_KEY": "keys/k.pem",
    }
    places = real_homes(environ, tmp_path / "cwd", tmp_path / "me")
    assert REPOSITORY / ".opsgate" in places
    for expected in (
        tmp_path / "cwd" / ".opsgate",
        tmp_path / "me" / ".opsgate",
        tmp_path / "cwd" / "data",
        tmp_path / "db" / "o.db",
        tmp_path / "db" / "o.db-wal",
        tmp_path / "db" / "o.db-shm",
        tmp_path / "cwd" / "keys" / "k.pem",
    ):
        assert expected in places
    assert len(places) == len(set(places))
    assert real_homes({"OPSGATE_DATABASE_URL": "postgresql://u@h/db"}, tmp_path, tmp_path) == [
        REPOSITORY / ".opsgate",
        tmp_path / ".opsgate",
    ]


def test_a_write_to_the_default_database_of_the_real_home_is_caught(
    fake: tuple[Path, Path, list[Path]],
) -> None:
    repository, _, places = fake
    before = snapshot(places)
    _write_to_default_store()  # no $OPSGATE_HOME: ./.opsgate/ of the "repository"
    changes = home_changes(before, snapshot(places))
    assert f"created {repository / '.opsgate'}" in changes
    assert f"created {repository / '.opsgate' / 'opsgate.db'}" in changes
    with pytest.raises(pytest.fail.Exception) as failed:
        check_untouched(LEAKY, before, snapshot(places))
    message = str(failed.value)
    assert message.startswith(f"{LEAKY} touched the real opsgate home")
    assert str(repository / ".opsgate" / "opsgate.db") in message


def test_a_change_to_an_existing_real_database_is_caught(
    fake: tuple[Path, Path, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, user, places = fake
    monkeypatch.setenv("OPSGATE_HOME", str(user / ".opsgate"))  # a test pointing at ~/.opsgate
    _write_to_default_store()
    before = snapshot(places)
    database = user / ".opsgate" / "opsgate.db"
    assert before[str(database)][0] > 0
    _write_to_default_store()
    changes = home_changes(before, snapshot(places))
    assert changes and all(_within(c.split(" ")[1], [user / ".opsgate"]) for c in changes)
    assert any(str(database) in change for change in changes)
    with pytest.raises(pytest.fail.Exception, match="test_leaky touched the real opsgate home"):
        check_untouched(LEAKY, before, snapshot(places))


def test_a_new_opsgate_folder_in_the_user_home_is_caught(
    fake: tuple[Path, Path, list[Path]],
) -> None:
    _, user, places = fake
    before = snapshot(places)
    (user / ".opsgate").mkdir()
    assert home_changes(before, snapshot(places)) == [f"created {user / '.opsgate'}"]
    (user / ".opsgate").rmdir()
    assert home_changes(before, snapshot(places)) == []


def test_work_in_a_temporary_home_is_not_a_change(
    fake: tuple[Path, Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, places = fake
    before = snapshot(places)
    monkeypatch.setenv("OPSGATE_HOME", str(tmp_path / "elsewhere"))
    _write_to_default_store()
    assert (tmp_path / "elsewhere" / "opsgate.db").is_file()
    check_untouched(LEAKY, before, snapshot(places))  # does not raise


def test_each_test_has_its_own_home() -> None:
    home = Path(os.environ["OPSGATE_HOME"])
    assert home.is_dir() and not list(home.iterdir())  # fresh and empty
    assert "OPSGATE_DATABASE_URL" not in os.environ
    assert "OPSGATE_AUDIT_SIGNING_KEY" not in os.environ
    assert default_url() == f"sqlite:///{home / 'opsgate.db'}"
    assert not _within(str(home), REAL_HOMES)


@pytest.fixture(scope="module")
def module_home() -> str | None:
    """What a module-scoped fixture (set up before the per-test home) sees."""
    return os.environ.get("OPSGATE_HOME")


def test_module_scoped_fixtures_have_a_temporary_home_too(module_home: str | None) -> None:
    assert module_home is not None and not _within(module_home, REAL_HOMES)
    assert module_home != os.environ["OPSGATE_HOME"]  # the session's, not this test's


def test_subprocesses_inherit_the_temporary_home() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from opsgate.store import default_url; print(default_url())"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPOSITORY,
    )
    assert done.stdout.strip() == f"sqlite:///{Path(os.environ['OPSGATE_HOME']) / 'opsgate.db'}"
