"""A model that cannot be reached is an infrastructure failure, not an agent regression
(issue #11, fault 4): each such trial is `model_unavailable`, counted apart and left out of
the metrics and the gate; a run where no task reached a model has no verdict (exit 2)."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from opsgate.cli.eval_main import app
from opsgate.errors import ModelOutputError, ModelTimeout, SuiteError
from opsgate.evals import load_suite
from opsgate.evals._report import build_report, compare, metrics, report_problem
from opsgate.evals._runner import Harness, TaskResult, run_task
from opsgate.gateway import Gateway, Run
from tests.evals.scripted import router_file
from tests.evals.test_runner import SCRIPT, SUITE
from tests.models.fake_openai import FakeOpenAI, error_reply


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _run(tmp_path: Path, url: str, *extra: str) -> tuple[Result, dict[str, Any]]:
    suite = tmp_path / "mini.yaml"
    suite.write_text(SUITE)
    report = tmp_path / "out" / "eval.json"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--suite",
            str(suite),
            "--model-router",
            str(router_file(tmp_path, url)),
            "--report",
            str(report),
            "--db",
            f"sqlite:///{tmp_path / 'o.db'}",
            *extra,
        ],
        env={"COLUMNS": "200"},
    )
    return result, json.loads(report.read_text()) if report.exists() else {}


def test_a_dead_model_server_is_no_verdict_on_the_agent(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    result, report = _run(tmp_path, url, "--min-success-rate", "0.5")
    assert result.exit_code == 2, result.output  # not 1: this says nothing about the agent
    assert "no trial reached a model (3 model_unavailable)" in result.output
    assert "ModelServerError" in result.output and "connection failed" in result.output
    assert "Traceback" not in result.output
    m = report["metrics"]
    assert (m["model_unavailable"], m["trials"], m["errors"]) == (3, 0, 0)
    for task in report["tasks"]:
        assert task["model_unavailable"] is True and not task["passed"]
        assert task["error"].startswith("model unavailable: ModelServerError: ")
        assert task["failures"] == [task["error"]]  # not "required call ... not made"
        assert task["reason"] == "model_error"
    assert report["gate"]["failures"] == [
        "no trial reached a model (3 model_unavailable): the model server is down or "
        "failing, and this run says nothing about the agent"
    ]
    assert report_problem(report) is None  # the published schema knows the new fields
    path = tmp_path / "out" / "eval.json"
    runner = CliRunner()
    judged = runner.invoke(app, ["assert", "--report", str(path), "--min-success-rate", "0.5"])
    assert judged.exit_code == 2 and "holds no verdict" in judged.output
    accepted = runner.invoke(
        app, ["baseline", "accept", str(path), "--db", f"sqlite:///{tmp_path / 'o.db'}"]
    )
    assert accepted.exit_code == 2 and "cannot be a baseline" in accepted.output


def test_some_tasks_without_a_model_are_counted_apart_and_the_gate_judges_the_rest(
    tmp_path: Path,
) -> None:
    # status-good and injection reach the model; refund-small's first call gets a 501
    # (not retried), so its run ends on a ModelServerError
    script = [*SCRIPT[:3], error_reply(501, "not implemented"), *SCRIPT[7:]]
    with FakeOpenAI(script) as server:
        result, report = _run(tmp_path, server.base_url, "--min-success-rate", "0.5")
    # on all three trials the rate would be 1/3 and fail; on the two that reached a model
    # it is 1/2 and holds
    assert result.exit_code == 0, result.output
    assert "1 of 3 trials could not reach a model" in result.output
    assert "the verdict is on the 2 that did" in result.output
    assert "model unavailable (not scored)" in result.output
    m = report["metrics"]
    assert (m["trials"], m["tasks"], m["passed"], m["model_unavailable"]) == (2, 2, 1, 1)
    assert m["success_rate"] == 0.5 and m["errors"] == 0
    tasks = {t["task_id"]: t for t in report["tasks"]}
    assert tasks["refund-small"]["model_unavailable"] is True
    assert "HTTP 501" in tasks["refund-small"]["error"]
    assert tasks["status-good"]["model_unavailable"] is False
    assert tasks["injection"]["model_unavailable"] is False
    assert not tasks["injection"]["passed"]  # a real verdict stays one
    assert report_problem(report) is None


def _results(spec: dict[str, bool | None]) -> list[TaskResult]:
    """Trials by task id: True passed, False failed, None model unavailable."""
    return [
        TaskResult(
            task,
            0,
            [],
            bool(verdict),
            [] if verdict else ["x"],
            "completed" if verdict is not None else "failed",
            "done" if verdict is not None else "model_error",
            None,
            cost_usd=0.01,
            error=None if verdict is not None else "model unavailable: ModelTimeout: slow",
            model_unavailable=verdict is None,
        )
        for task, verdict in spec.items()
    ]


def test_metrics_and_compare_leave_unavailable_trials_out() -> None:
    results = _results({"a": True, "b": False, "c": None, "d": None})
    m = metrics(results)
    assert (m["trials"], m["tasks"], m["passed"], m["model_unavailable"]) == (2, 2, 1, 2)
    assert m["success_rate"] == 0.5 and m["errors"] == 0
    assert m["total_cost_usd"] == pytest.approx(0.02)

    def report(spec: dict[str, bool | None]) -> dict[str, Any]:
        return build_report(
            "s",
            1,
            _results(spec),
            trials=1,
            model_router="r",
            started_at=0,
            ended_at=1,
            thresholds={"min_success_rate": 0.5},
            suite_tasks=4,
        )

    new = report({"a": True, "b": False, "c": None, "d": None})
    assert new["gate"]["failures"] == []  # 1 of the 2 that reached a model
    old = report({"a": True, "b": False, "c": True, "d": True})
    regressions, notes, changes = compare(new, old, max_success_drop=0.02)
    assert regressions == [] and changes == []  # c and d are not "newly failing"
    assert "compared on 2 of 4 tasks" in notes[0]
    assert any("2 trials of the report could not reach a model" in n for n in notes)
    dead = report({"a": None, "b": None})
    with pytest.raises(SuiteError, match="nothing to compare: in the report, no trial reached"):
        compare(dead, old)


class _Raises:
    """An agent that calls its model itself and lets the failure out (no `guarded`)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def run(self, run: Run, text: str) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (ModelTimeout("no answer within 1s", model="m", attempts=3), True),
        (ModelOutputError("not a tool call", model="m", attempts=1), False),
    ],
)
async def test_a_model_error_an_agent_lets_out_is_classified(
    error: Exception, unavailable: bool
) -> None:
    suite = load_suite("mini.yaml", text=SUITE)
    base = Harness.load(suite)

    def make_agent(gateway: Gateway, router: Any) -> _Raises:
        return _Raises(error)

    harness = dataclasses.replace(base, make_agent=make_agent)
    result = await run_task(harness, suite.tasks[0], 0, router=None)
    assert result.model_unavailable is unavailable
    assert (result.status, result.reason) == ("failed", "model_error")
    if unavailable:
        assert result.error == "model unavailable: ModelTimeout: no answer within 1s"
    else:  # the model answered, badly: a verdict on the agent, not a harness error
        assert result.error is None and result.failures
