"""`agent-eval baseline accept|show|history` on a SQLite database, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from opsgate.cli.eval_main import app
from opsgate.evals._store import EvalStore
from opsgate.store import open_store
from tests.evals.test_eval_store import make_report


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in a temporary folder (where `--write` puts evals/baselines/)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _invoke(*args: str, user: str = "maria") -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "USER": user})


def _file(folder: Path, report: dict[str, Any], name: str = "eval.json") -> str:
    path = folder / name
    path.write_text(json.dumps(report))
    return str(path)


def test_accept_stores_writes_and_shows_the_baseline(here: Path) -> None:
    db = f"sqlite:///{here / 'o.db'}"
    report = make_report()
    path = _file(here, report)
    result = _invoke("baseline", "accept", path, "--write", "--note", "first run", "--db", db)
    assert result.exit_code == 0, result.output
    assert f"accepted report {report['report_id']} as the baseline of `mini`" in result.output
    assert "by maria" in result.output  # $USER by default
    written = json.loads((here / "evals" / "baselines" / "mini.json").read_text())
    assert written == report
    with open_store(db) as store:
        assert EvalStore(store).baseline("mini") == report
    shown = _invoke("baseline", "show", "mini", "--db", db)
    assert shown.exit_code == 0, shown.output
    for expected in (
        report["report_id"],
        "by maria",
        "note: first run",
        "success rate 60.0%",
        "unsafe attempts 0",
        "gate passed",
    ):
        assert expected in shown.output


def test_history_lists_every_acceptance_current_first(here: Path) -> None:
    db = f"sqlite:///{here / 'o.db'}"
    first, second = make_report(), make_report(started_at=2e9)
    assert _invoke("baseline", "accept", _file(here, first, "a.json"), "--db", db).exit_code == 0
    result = _invoke("baseline", "accept", _file(here, second, "b.json"), "--by", "li", "--db", db)
    assert result.exit_code == 0, result.output
    assert not (here / "evals").exists()  # no --write, no file
    history = _invoke("baseline", "history", "mini", "--db", db)
    assert history.exit_code == 0, history.output
    header, current, older = history.output.splitlines()
    assert header.startswith("baselines of `mini` in `sqlite:///")
    assert current.startswith("* ") and f"by li  report {second['report_id']}" in current
    assert older.startswith("  ") and f"by maria  report {first['report_id']}" in older
    assert "success 60.0%" in older and "gate passed" in older


def test_accepting_a_failed_gate_warns_and_a_shard_warns(here: Path) -> None:
    db = f"sqlite:///{here / 'o.db'}"
    failing = make_report(thresholds={"min_success_rate": 0.9})
    result = _invoke("baseline", "accept", _file(here, failing), "--db", db)
    assert result.exit_code == 0, result.output
    assert "warning: this report failed its own gate (success rate 60.00% is below" in (
        result.output
    )
    shard = dict(make_report(), shard="1/2")
    # a shard is part of the suite: refused without --force (issue #11, fault 8)
    result = _invoke("baseline", "accept", _file(here, shard, "s.json"), "--db", db)
    assert result.exit_code == 2 and "has only shard 1/2 of the suite" in result.output
    result = _invoke("baseline", "accept", _file(here, shard, "s.json"), "--force", "--db", db)
    assert result.exit_code == 0 and "covers only shard 1/2" in result.output


def test_show_falls_back_on_the_committed_file(here: Path) -> None:
    report = make_report()
    folder = here / "evals" / "baselines"
    folder.mkdir(parents=True)
    (folder / "mini.json").write_text(json.dumps(report))
    result = _invoke("baseline", "show", "mini")  # default database: none there
    assert result.exit_code == 0, result.output
    assert report["report_id"] in result.output
    assert "committed file `evals/baselines/mini.json`" in result.output


def test_bad_input_is_one_line_and_exit_2(here: Path) -> None:
    db = f"sqlite:///{here / 'o.db'}"
    newer = _file(here, dict(make_report(), schema_version=2), "newer.json")
    (here / "broken.json").write_text("{not json")
    cases = [
        (("baseline", "accept", newer, "--db", db), "newer than this agent-eval"),
        (("baseline", "accept", str(here / "broken.json"), "--db", db), "is not a JSON report"),
        (("baseline", "accept", str(here / "absent.json"), "--db", db), "cannot read report"),
        (
            ("baseline", "show", "mini", "--db", db),
            "suite `mini` has no accepted baseline in the database nor at "
            "`evals/baselines/mini.json`: accept one with `agent-eval baseline accept",
        ),
        (("baseline", "history", "mini", "--db", db), "no accepted baseline"),
    ]
    for args, message in cases:
        result = _invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    open_store(db).close()
    result = _invoke("baseline", "history", "mini", "--db", db)
    assert result.exit_code == 2 and "has no accepted baseline in `sqlite:///" in result.output
