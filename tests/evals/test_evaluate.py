"""`opsgate.evals.evaluate`: the API `agent-eval run` is a thin command over (issue #12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from opsgate.errors import SuiteError
from opsgate.evals import TaskResult, evaluate, load_suite, select_tasks
from opsgate.models import load_router_config
from opsgate.store import open_store, runs
from tests.evals.scripted import router_file
from tests.evals.test_runner import SCRIPT, SUITE
from tests.models.fake_openai import FakeOpenAI


def test_evaluate_runs_the_suite_records_it_and_reports(tmp_path: Path) -> None:
    (tmp_path / "mini.yaml").write_text(SUITE)
    suite = load_suite(tmp_path / "mini.yaml")
    seen: list[TaskResult] = []
    with FakeOpenAI(list(SCRIPT)) as server, open_store(f"sqlite:///{tmp_path / 'o.db'}") as store:
        config = load_router_config(router_file(tmp_path, server.base_url))
        evaluation = evaluate(
            suite, config, store, min_success_rate=0.9, router_name="r.yaml", on_done=seen.append
        )
        with store.engine.connect() as conn:
            purposes = {p for (p,) in conn.execute(select(runs.c.purpose))}
    report = evaluation.report
    assert evaluation.record_problems == []
    assert [t["task_id"] for t in report["tasks"]] == [t.id for t in suite.tasks]
    assert len(seen) == 3 and report["metrics"]["passed"] == 2
    assert report["suite_tasks"] == 3 and report["model_router"] == "r.yaml"
    assert report["gate"]["failures"] == ["success rate 66.67% is below the minimum 90.00%"]
    assert purposes == {"eval"}


def test_evaluate_refuses_an_empty_selection_and_a_percentage(tmp_path: Path) -> None:
    (tmp_path / "mini.yaml").write_text(SUITE)
    suite = load_suite(tmp_path / "mini.yaml")
    config = load_router_config(router_file(tmp_path, "http://127.0.0.1:9/v1"))
    with open_store(f"sqlite:///{tmp_path / 'o.db'}") as store:
        with pytest.raises(SuiteError, match="no task matches"):
            evaluate(suite, config, store, tasks=select_tasks(suite, tags=["nope"]))
        with pytest.raises(SuiteError, match=r"did you mean 0\.88"):
            evaluate(suite, config, store, min_success_rate=88)
