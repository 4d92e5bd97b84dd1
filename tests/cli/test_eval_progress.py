"""`agent-eval run` tells a CI log how it goes (issue #11, fault 9): one line per finished
trial when its output is not a terminal (the log sat silent for five minutes), a Rich bar
when it is; task ids from a suite are shown as text."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from tests.evals import test_runner

from opsgate.cli._eval_progress import progress_line, trial_progress
from opsgate.evals import TaskResult


def _result(task_id: str = "t1", **changes: object) -> TaskResult:
    fields: dict[str, object] = {
        "task_id": task_id,
        "trial": 0,
        "tags": [],
        "passed": True,
        "failures": [],
        "status": "completed",
        "reason": "",
        "output": None,
        "latency_s": 1.25,
        "cost_usd": 0.0004,
    }
    fields.update(changes)
    return TaskResult(**fields)  # type: ignore[arg-type]


def test_a_run_in_ci_prints_one_line_per_finished_trial(tmp_path: Path) -> None:
    result, report = test_runner._run(tmp_path, "--min-success-rate", "0.5")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert len(lines) == 3 == len(report["tasks"])
    assert sorted(line[:5] for line in lines) == ["[1/3]", "[2/3]", "[3/3]"]
    assert "running mini: 3 trials" in result.output
    by_task = {t["task_id"]: t for t in report["tasks"]}
    failing = next(line for line in lines if " injection " in line)
    assert " FAIL " in failing and by_task["injection"]["failures"][0][:40] in failing
    assert sum(" pass " in line for line in lines) == 2


def test_a_line_names_the_verdict_and_keeps_hostile_ids_inert() -> None:
    line = progress_line(2, 10, _result("\x1b[2J[red]x[/]\u202e"), 12.4)
    assert line.startswith("[ 2/10] pass ") and "\x1b" not in line and "\u202e" not in line
    assert "completed in 1.2s, $0.000400 (elapsed 12s)" in line
    down = progress_line(1, 1, _result(passed=False, model_unavailable=True, error="boom"), 0)
    assert "MODEL UNAVAILABLE" in down and down.endswith(": boom")
    failed = progress_line(1, 1, _result(passed=False, failures=["required call x not made"]), 0)
    assert " FAIL " in failed and failed.endswith(": required call x not made")


def test_a_terminal_gets_the_bar_and_no_lines() -> None:
    screen, log = io.StringIO(), io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=80)
    lines = Console(file=log, width=80)
    with trial_progress(terminal, lines, "[bold]suite", 2) as done:
        done(_result())
        done(_result("t2"))
    assert log.getvalue() == ""
    assert "[bold]suite" in screen.getvalue()  # shown as text, not parsed as markup


def test_markup_in_a_task_id_is_printed_not_parsed() -> None:
    log = io.StringIO()
    with trial_progress(Console(file=io.StringIO()), Console(file=log, width=200), "s", 1) as done:
        done(_result("[/]oops"))
    assert "[/]oops" in log.getvalue()
