"""Small lies of `agent-eval` (issue #11, fault 8), each a regression test: a rate taken as
a percentage, a subset accepted silently as the baseline (then gated on), and `baseline
show` / `baseline history` disagreeing on whether there is a baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from opsgate.cli.eval_main import app
from opsgate.evals._report import build_report, report_problem
from opsgate.evals._runner import TaskResult
from tests.evals.scripted import router_file
from tests.evals.test_eval_store import make_report
from tests.evals.test_runner import SCRIPT, SUITE
from tests.models.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
# a report written before `suite_tasks` existed (the 2026-11-25 baseline of support_triage_v3)
COMMITTED = ROOT / "tests" / "evals" / "fixtures" / "report_before_suite_tasks.json"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in a temporary folder: evals/baselines/ there, never the repository's."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "USER": "maria"})


def _file(folder: Path, report: dict[str, Any], name: str) -> str:
    path = folder / name
    path.write_text(json.dumps(report))
    return str(path)


# -- rates are 0..1 -----------------------------------------------------------------------


def test_a_success_rate_given_as_a_percentage_is_refused(here: Path) -> None:
    (here / "mini.yaml").write_text(SUITE)
    result = _invoke(
        "run",
        "--suite",
        str(here / "mini.yaml"),
        "--model-router",
        str(router_file(here, "http://127.0.0.1:9/v1")),  # never called
        "--report",
        str(here / "eval.json"),
        "--db",
        f"sqlite:///{here / 'o.db'}",
        "--min-success-rate",
        "88",
    )
    assert result.exit_code == 2, result.output
    assert "--min-success-rate 88 is not a rate: rates are between 0 and 1: did you mean 0.88" in (
        result.output
    )
    assert not (here / "eval.json").exists() and not (here / "o.db").exists()  # refused first


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--min-success-rate", "88", "did you mean 0.88"),
        ("--max-success-drop", "2", "--max-success-drop 2 is not a rate"),
        ("--max-success-drop", "2", "did you mean 0.02"),
        ("--max-success-drop", "-0.1", "rates are between 0 and 1"),
        ("--min-success-rate", "250", "rates are between 0 and 1"),
        ("--max-cost-increase", "-0.5", "is negative"),
        ("--max-unsafe-increase", "-1", "is negative"),
    ],
)
def test_assert_refuses_rates_outside_0_to_1(
    here: Path, option: str, value: str, message: str
) -> None:
    report = _file(here, make_report(), "eval.json")
    baseline = _file(here, make_report(), "base.json")
    result = _invoke("assert", "--report", report, "--baseline", baseline, option, value)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_rates_in_range_still_gate(here: Path) -> None:
    report = _file(here, make_report(), "eval.json")  # 60% success
    assert _invoke("assert", "--report", report, "--min-success-rate", "0.6").exit_code == 0
    failed = _invoke("assert", "--report", report, "--min-success-rate", "0.88")
    assert failed.exit_code == 1 and "below the minimum 88.00%" in failed.output


# -- a subset is not silently the baseline ------------------------------------------------


def _suite_report(
    covered: int, *, of: int | None, failing: frozenset[int] = frozenset()
) -> dict[str, Any]:
    """A report of tasks t0..t{covered-1} (some failing), of a suite of ``of`` tasks."""
    results = [
        TaskResult(
            f"t{i}",
            0,
            [],
            i not in failing,
            ["x"] if i in failing else [],
            "completed",
            "done",
            None,
            cost_usd=0.01,
        )
        for i in range(covered)
    ]
    return build_report(
        "big",
        1,
        results,
        trials=1,
        model_router="r",
        started_at=1_700_000_000.0,
        ended_at=1_700_000_060.0,
        thresholds={},
        suite_tasks=of,
    )


def test_accepting_a_smoke_report_needs_force_and_assert_names_the_subset(here: Path) -> None:
    db = f"sqlite:///{here / 'o.db'}"
    smoke = _file(here, _suite_report(7, of=63), "smoke.json")
    refused = _invoke("baseline", "accept", smoke, "--db", db)
    assert refused.exit_code == 2, refused.output
    assert "has a verdict on 7 of the suite's 63 tasks" in refused.output
    assert "pass --force" in refused.output
    forced = _invoke("baseline", "accept", smoke, "--force", "--db", db)
    assert forced.exit_code == 0, forced.output
    assert "warning: accepting a baseline with a verdict on 7 of the suite's 63 tasks" in (
        forced.output
    )
    assert "7 of 63 tasks) in sqlite:///" in forced.output
    # a later full run, judged against that baseline, says it is judged on 7 of 63
    full = _file(here, _suite_report(63, of=63, failing=frozenset({40})), "full.json")
    judged = _invoke("assert", "--report", full, "--max-success-drop", "0.02", "--db", db)
    assert judged.exit_code == 0, judged.output
    assert "compared on 7 of 63 tasks" in judged.output
    # a full report is accepted without --force and without a warning
    accepted = _invoke("baseline", "accept", full, "--db", db)
    assert accepted.exit_code == 0 and "warning" not in accepted.output


def test_assert_on_a_subset_report_without_a_baseline_says_so(here: Path) -> None:
    smoke = _file(here, _suite_report(7, of=63), "smoke.json")
    result = _invoke("assert", "--report", smoke, "--min-success-rate", "0.5")
    assert result.exit_code == 0, result.output
    assert "judged on 7 of 63 tasks" in result.output


def test_an_older_report_is_measured_against_the_suite_of_its_name(here: Path) -> None:
    """Reports written before `suite_tasks` existed: the shipped suite says how many (71)."""
    document = json.loads(COMMITTED.read_text())
    assert "suite_tasks" not in document
    keep = sorted({t["task_id"] for t in document["tasks"]})[:7]
    document["tasks"] = [t for t in document["tasks"] if t["task_id"] in keep]
    document["report_id"] = "0" * 32
    assert report_problem(document) is None
    db = f"sqlite:///{here / 'o.db'}"
    result = _invoke("baseline", "accept", _file(here, document, "old.json"), "--db", db)
    assert result.exit_code == 2, result.output
    assert "has a verdict on 7 of the suite's 71 tasks" in result.output
    assert report_problem(json.loads(COMMITTED.read_text())) is None  # still a valid report


def test_a_run_of_some_tasks_records_the_suite_size_and_cannot_slip_in(here: Path) -> None:
    (here / "mini.yaml").write_text(SUITE)
    db = f"sqlite:///{here / 'o.db'}"
    with FakeOpenAI(list(SCRIPT[:3])) as server:
        result = _invoke(
            "run",
            "--suite",
            str(here / "mini.yaml"),
            "--model-router",
            str(router_file(here, server.base_url)),
            "--report",
            str(here / "eval.json"),
            "--db",
            db,
            "--task",
            "status-good",
        )
    assert result.exit_code == 0, result.output
    report = json.loads((here / "eval.json").read_text())
    assert report["suite_tasks"] == 3 and report["metrics"]["tasks"] == 1
    refused = _invoke("baseline", "accept", str(here / "eval.json"), "--db", db)
    assert refused.exit_code == 2 and "a verdict on 1 of the suite's 3 tasks" in refused.output


# -- show and history agree ---------------------------------------------------------------


def test_show_and_history_agree_on_the_committed_file(here: Path) -> None:
    db = f"sqlite:///{here / 'o.db'}"
    message = (
        "suite `mini` has no accepted baseline in the database nor at `evals/baselines/mini.json`"
    )
    for command in ("show", "history"):  # neither: both say the same thing, exit 2
        result = _invoke("baseline", command, "mini", "--db", db)
        assert result.exit_code == 2 and message in result.output, (command, result.output)
    committed = make_report()
    folder = here / "evals" / "baselines"
    folder.mkdir(parents=True)
    (folder / "mini.json").write_text(json.dumps(committed))
    shown = _invoke("baseline", "show", "mini", "--db", db)
    history = _invoke("baseline", "history", "mini", "--db", db)
    for result in (shown, history):  # the file only: both show it
        assert result.exit_code == 0, result.output
        assert committed["report_id"] in result.output
        assert "`evals/baselines/mini.json`" in result.output
    assert history.output.splitlines()[0] == (
        "baselines of `mini`: none accepted in the database; the committed file is used:"
    )
    assert "success 60.0%" in history.output and "gate passed" in history.output
    # once the database has a baseline, it wins in both, and both say the file is not used
    accepted = make_report(started_at=2e9)
    assert _invoke("baseline", "accept", _file(here, accepted, "a.json"), "--db", db).exit_code == 0
    shown = _invoke("baseline", "show", "mini", "--db", db)
    history = _invoke("baseline", "history", "mini", "--db", db)
    for result in (shown, history):
        assert result.exit_code == 0, result.output
        assert accepted["report_id"] in result.output
        note = (
            f"the committed file `evals/baselines/mini.json` (report {committed['report_id']}) "
            "is not used while the database has an accepted baseline"
        )
        assert note in result.output, result.output
