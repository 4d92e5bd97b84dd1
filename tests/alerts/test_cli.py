"""`opsgate alerts add|list|remove|check`: exit 0 quiet, 1 firing, 2 bad input; store text
printed escaped."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from opsgate.alerts import list_rules, recent_deliveries
from opsgate.cli.main import app
from opsgate.store import open_store
from tests.alerts.conftest import Recorder
from tests.alerts.test_webhook import Hook

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'opsgate.db'}"


def _backlog(db: str, workflow: str = "support") -> None:
    """A request pending for an hour in ``workflow``."""
    with open_store(db) as store:
        Recorder(store).approval(workflow, time.time() - 3600, expires_at=time.time() + 3600)


def _add(db: str, workflow: str, *args: str) -> Result:
    return runner.invoke(app, ["alerts", "add", workflow, *args, "--as", "ana", "--db", db])


def test_check_exit_codes(db: str) -> None:
    nothing = runner.invoke(app, ["alerts", "check", "--db", db])
    assert nothing.exit_code == 0 and "nothing recorded yet" in nothing.output
    added = _add(db, "support", "--kind", "approval_backlog", "--threshold", "30")
    assert added.exit_code == 0, added.output
    assert "rule 1" in added.output and "nothing is recorded for the workflow" in added.output
    quiet = runner.invoke(app, ["alerts", "check", "--db", db])
    assert quiet.exit_code == 0 and "no alert fires" in quiet.output
    _backlog(db)
    loud = runner.invoke(app, ["alerts", "check", "--db", db])
    assert loud.exit_code == 1
    assert "FIRING rule 1 approval_backlog: `support`: 1 approval request(s) pending" in loud.output
    as_json = runner.invoke(app, ["alerts", "check", "--db", db, "--json"])
    assert as_json.exit_code == 1
    (firing,) = json.loads(as_json.stdout)["firing"]
    assert firing["rule_id"] == 1 and firing["kind"] == "approval_backlog"


def test_check_sends_the_webhook(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = Hook()
    try:
        monkeypatch.setenv("HOOK_SECRET", "s3cret-value")
        _backlog(db)
        added = _add(
            db,
            "support",
            *("--kind", "approval_backlog", "--threshold", "30", "--webhook", hook.url),
            *("--secret-env", "HOOK_SECRET"),
        )
        assert added.exit_code == 0 and "nothing is recorded" not in added.output
        assert "token=abc" not in added.output  # the URL's host only
        dry = runner.invoke(app, ["alerts", "check", "--no-notify", "--db", db])
        assert dry.exit_code == 1 and hook.received == []
        sent = runner.invoke(app, ["alerts", "check", "--db", db])
        assert sent.exit_code == 1 and "webhook delivered (1 attempt(s))" in sent.output
        assert len(hook.received) == 1 and "s3cret-value" not in sent.output
        again = runner.invoke(app, ["alerts", "check", "--db", db])
        assert "webhook suppressed" in again.output and len(hook.received) == 1
    finally:
        hook.close()
    with open_store(db, migrate=False) as store:
        assert [d.status_code for d in recent_deliveries(store)] == [200]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--kind", "cpu", "--threshold", "1"], "no alert kind `cpu`"),
        (["--kind", "success_rate_drop", "--threshold", "-3"], "cannot be negative"),
        (["--kind", "success_rate_drop", "--threshold", "x"], "threshold"),
        (
            ["--kind", "approval_backlog", "--threshold", "5", "--webhook", "not a url"],
            "http:// or https://",
        ),
        (
            ["--kind", "approval_backlog", "--threshold", "5", "--webhook", "https://h.example/"],
            "secret's variable name",
        ),
        (["--kind", "approval_backlog", "--threshold", "5", "--sink", "pager"], "no sink"),
    ],
)
def test_bad_input_exits_2(db: str, args: list[str], says: str) -> None:
    result = _add(db, "support", *args)
    assert result.exit_code == 2 and says in result.output, result.output


def test_list_and_remove(db: str) -> None:
    hostile = "[red]sup[/]port<b>"
    _backlog(db, hostile)
    added = _add(db, hostile, "--kind", "unsafe_attempts_rise", "--threshold", "2", "--sink", "log")
    assert added.exit_code == 0 and "[red]sup[/]port<b>" in added.output
    listed = runner.invoke(app, ["alerts", "list", "--db", db])
    assert listed.exit_code == 0 and "[red]sup" in listed.output
    as_json = json.loads(runner.invoke(app, ["alerts", "list", "--json", "--db", db]).stdout)
    assert as_json["rules"][0]["workflow"] == hostile
    removed = runner.invoke(app, ["alerts", "remove", "1", "--as", "bob", "--db", db])
    assert removed.exit_code == 0 and "removed rule 1" in removed.output
    gone = runner.invoke(app, ["alerts", "remove", "1", "--as", "bob", "--db", db])
    assert gone.exit_code == 2 and "no alert rule 1" in gone.output
    with open_store(db, migrate=False) as store:
        assert list_rules(store) == []
    empty = runner.invoke(app, ["alerts", "list", "--db", db])
    assert "no alert rules" in empty.output
